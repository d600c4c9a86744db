"""Running a stage in several processes: the command line for torchrun or `accelerate launch`, and a
parent that runs it, relays its progress to callbacks and stops it when a callback asks.

    python -m torch.distributed.run --standalone --nproc_per_node N -m training sft --config cfg.json ...
    python -m accelerate.commands.launch --num_processes N [--config_file ds.yaml] -m training sft ...

Each process builds `Accelerator()`, which reads its rank from the launcher's environment; the
stages shard their data by rank and only the main process writes the model directory. DeepSpeed
ZeRO and FSDP come from an accelerate config file, never from code here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.callbacks import Callbacks, StopTraining

# CLI flags per stage, in the order the stage functions take their inputs
STAGE_INPUTS = {
    "sft": ("batch", "base", "reward_model"),
    "reward": ("batch", "base"),
    "ppo": ("batch", "policy", "reward_model"),
}


def config_from_dict(cls: Any, values: dict[str, Any]) -> Any:
    """A stage config dataclass from a plain dict (as written by to_dict); unknown keys are ignored."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        v = values[f.name]
        if f.name == "runtime" and isinstance(v, dict):
            from training.config import RuntimeConfig

            v = config_from_dict(RuntimeConfig, v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def launch_command(
    stage: str,
    args: list[str],
    processes: int,
    accelerate_config: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command that runs `python -m training <stage> <args>` in `processes` processes.

    One process: plain python. Several: torchrun (standalone rendezvous on a free port), or
    `accelerate launch` when an accelerate config file is given (DeepSpeed, FSDP, several machines).
    """
    if stage not in STAGE_INPUTS:
        raise ValueError(f"unknown stage {stage!r}")
    module = ["-m", "training", stage, *args]
    if processes <= 1:
        return [python, *module]
    if accelerate_config:
        return [
            python, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
            "--num_processes", str(processes), *module,
        ]  # fmt: skip
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *module]


def stage_args(
    stage: str, inputs: Mapping[str, str | Path | None], out: str | Path, config_file: Path, run: Any = None
) -> list[str]:
    """CLI arguments of a stage: its input directories, output, JSON config file and run id."""
    args = ["--out", str(out), "--config", str(config_file)]
    for name in STAGE_INPUTS[stage]:
        if inputs.get(name) is not None:
            args += [f"--{name.replace('_', '-')}", str(inputs[name])]
    if run is not None:
        args += ["--run", str(run)]
    return args


def run_in_processes(
    stage: str,
    config: Any,
    inputs: Mapping[str, str | Path | None],
    out: str | Path,
    processes: int,
    callbacks: Any = None,
    run: Any = None,
    accelerate_config: str | None = None,
    poll_s: float = 1.0,
) -> Path:
    """Run a stage in `processes` processes and wait; progress lines are relayed to callbacks.

    Raises StopTraining (after terminating the processes) when a callback asks to stop, and
    RuntimeError with the output's tail when the stage fails. Returns out.
    """
    cbs = Callbacks(callbacks)
    with tempfile.TemporaryDirectory(prefix="rlhf-launch-") as tmp:
        cfg_file, progress, log = (
            Path(tmp) / "config.json",
            Path(tmp) / "progress.jsonl",
            Path(tmp) / "log.txt",
        )
        cfg_file.write_text(json.dumps(config.to_dict()))
        args = [*stage_args(stage, inputs, out, cfg_file, run), "--progress-file", str(progress)]
        cmd = launch_command(stage, args, processes, accelerate_config)
        with open(log, "wb") as log_f:
            proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env={**os.environ})  # noqa: S603
            seen = 0
            while proc.poll() is None:
                time.sleep(poll_s)
                seen = _relay(progress, seen, cbs)
                try:
                    cbs.check_stop()
                except StopTraining:
                    proc.terminate()
                    proc.wait(30)
                    raise
            _relay(progress, seen, cbs)
        if proc.returncode != 0:
            raise RuntimeError(f"{stage} in {processes} processes failed:\n{log.read_text()[-3000:]}")
    return Path(out)


def _relay(progress: Path, seen: int, cbs: Callbacks) -> int:
    """Pass progress lines after the first `seen` to the callbacks; returns the lines read so far."""
    if not progress.exists():
        return seen
    lines = progress.read_text().splitlines()
    complete = lines if progress.read_text().endswith("\n") else lines[:-1]
    for line in complete[seen:]:
        row = json.loads(line)
        if "log" in row:
            cbs.log(row["log"])
        else:
            cbs.progress(row["stage"], row["step"], row["total"], row["metrics"])
    return len(complete)


class JsonlProgress:
    """A callback that appends progress and log lines to a file (what the launching parent reads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=float) + "\n")

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Append one progress line."""
        self._write({"stage": stage, "step": step, "total": total, "metrics": metrics})

    def on_log(self, line: str) -> None:
        """Append one log line."""
        self._write({"log": line})
