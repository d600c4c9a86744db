"""Running a stage in several processes: the command line for torchrun or `accelerate launch`, and a
parent that runs it, relays its progress to callbacks and stops it when a callback asks.

    python -m torch.distributed.run --standalone --nproc_per_node N -m training.launch spec.json prog.jsonl
    python -m accelerate.commands.launch --num_processes N [--config_file ds.yaml] -m training.launch ...

(`python -m training sft ...` runs under either launcher the same way, for people at a shell.)

Each process builds `Accelerator()`, which reads its rank from the launcher's environment; the
stages shard their data by rank and only the main process writes the model directory. DeepSpeed
ZeRO and FSDP come from an accelerate config file, never from code here.
"""

from __future__ import annotations

import dataclasses
import importlib
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


def import_path(path: str) -> Any:
    """The object at "package.module:attribute" (a stage's runner or config class)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


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
    module_args: list[str],
    processes: int,
    accelerate_config: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command that runs `python <module_args>` (e.g. ["-m", "training", "sft", ...]) in `processes`
    processes.

    One process: plain python. Several: torchrun (standalone rendezvous on a free port), or
    `accelerate launch` when an accelerate config file is given (DeepSpeed, FSDP, several machines).
    """
    if processes <= 1:
        return [python, *module_args]
    if accelerate_config:
        return [
            python, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
            "--num_processes", str(processes), *module_args,
        ]  # fmt: skip
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*torchrun, *module_args]


def run_in_processes(
    runner: str,
    config: Any,
    kwargs: Mapping[str, Any],
    processes: int,
    callbacks: Any = None,
    accelerate_config: str | None = None,
    poll_s: float = 1.0,
) -> Path:
    """Run `runner(config=config, callbacks=..., **kwargs)` in `processes` processes and wait.

    runner is an import path ("training.sft:run_sft"), so any stage runs here without a list of
    stages; kwargs are its other arguments (paths, run id), out_dir among them. Progress lines are
    relayed to callbacks. Raises StopTraining (after terminating the processes) when a callback asks
    to stop, and RuntimeError with the output's tail when the stage fails. Returns out_dir.
    """
    cbs = Callbacks(callbacks)
    cls = type(config)
    spec = {
        "runner": runner,
        "config_class": f"{cls.__module__}:{cls.__qualname__}",
        "config": config.to_dict(),
        "kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()},
    }
    with tempfile.TemporaryDirectory(prefix="rlhf-launch-") as tmp:
        spec_file, progress, log = (Path(tmp) / n for n in ("spec.json", "progress.jsonl", "log.txt"))
        spec_file.write_text(json.dumps(spec))
        module_args = ["-m", "training.launch", str(spec_file), str(progress)]
        cmd = launch_command(module_args, processes, accelerate_config)
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
            raise RuntimeError(f"{runner} in {processes} processes failed:\n{log.read_text()[-3000:]}")
    return Path(kwargs["out_dir"])


def main(argv: list[str]) -> None:
    """One process of run_in_processes: `python -m training.launch SPEC_JSON PROGRESS_JSONL`."""
    spec = json.loads(Path(argv[0]).read_text())
    config = config_from_dict(import_path(spec["config_class"]), spec["config"])
    import_path(spec["runner"])(config=config, callbacks=[JsonlProgress(argv[1])], **spec["kwargs"])


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


if __name__ == "__main__":
    main(sys.argv[1:])
