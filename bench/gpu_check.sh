#!/usr/bin/env bash
# GPU check, one call of at most 8 minutes on a lent GPU: SFT, RM and PPO (GAE, rloo) at 125M-350M parameters
# (built from configs, random weights) in bf16; prints tokens/s, MFU, peak memory and KL at step 0.
# No network needed: it uses the repository's .venv when its torch sees CUDA, else python3.
# Extra arguments go to bench/gpu_check.py (e.g. --models 125m --steps 3); `--device cpu --tiny` is a smoke run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

has_cuda() { "$1" -c 'import sys, torch, transformers, accelerate; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

PY=""
for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && has_cuda "$candidate"; then PY="$candidate"; break; fi
done
if [[ " $* " == *" --device cpu "* ]]; then
    PY=$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)
fi
if [ -z "$PY" ]; then
    for candidate in .venv/bin/python python3; do
        command -v "$candidate" >/dev/null 2>&1 && echo "gpu_check: $candidate: $("$candidate" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
    done
    echo "gpu_check: no Python here has torch with CUDA plus transformers and accelerate; skipped (nothing measured)"
    exit 0
fi
echo "gpu_check: $PY; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
exec timeout 480 "$PY" -m bench.gpu_check "$@"
