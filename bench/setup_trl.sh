#!/usr/bin/env bash
# Creates the TRL peer environments for bench/training_throughput.py (ignored by git):
#   .bench-venvs/trl116  torch 2.13.0 (CPU wheel) + trl 1.16.0  (SFTTrainer, RewardTrainer)
#   .bench-venvs/trl112  torch 2.13.0 (CPU wheel) + trl 1.12.0  (trl.experimental.ppo.PPOTrainer)
# Both also get this repository's training extra (transformers, accelerate, ...) so the
# benchmark's worker scripts can import the same model and data code.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENVS="${BENCH_VENVS:-$ROOT/.bench-venvs}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
for spec in "trl116 trl==1.16.0" "trl112 trl==1.12.0"; do
  set -- $spec
  if [ ! -x "$VENVS/$1/bin/python" ] || ! "$VENVS/$1/bin/python" -c "import trl" 2>/dev/null; then
    "$PY" -m venv "$VENVS/$1"
    "$VENVS/$1/bin/pip" install -q torch==2.13.0
    "$VENVS/$1/bin/pip" install -q "$2" datasets "transformers>=4.46" accelerate safetensors tokenizers tqdm numpy
  fi
  "$VENVS/$1/bin/python" -c "import trl, torch, transformers; print('$1', trl.__version__, torch.__version__, transformers.__version__)"
done
