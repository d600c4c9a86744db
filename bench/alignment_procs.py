"""The alignment benchmark's progress lines, phase timer and second processes (bench/alignment.py).

Each second process runs one thread and writes a log; the last line of the log is its output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Printer:
    """Prints a progress line every `every` steps of a stage, and log lines."""

    def __init__(self, every: int = 10) -> None:
        self.every = every

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Print selected metrics."""
        if step % self.every == 0 or step == total:
            shown = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items() if isinstance(v, float))
            print(f"  {stage} {step}/{total} {shown}", flush=True)  # 3 significant digits: lr 3e-05, not 0.0

    def on_log(self, message: str) -> None:
        """Print a stage's log line."""
        print(f"  {message}", flush=True)


class Timer:
    """Wall-clock per phase."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.phases: dict[str, float] = {}

    def done(self, name: str, since: float) -> float:
        """Record a phase that started at `since`; returns now."""
        self.phases[name] = time.time() - since
        print(f"[{time.time() - self.t0:7.1f}s] {name}: {self.phases[name]:.1f}s", flush=True)
        return time.time()


def start_large_base(cache: Path, size: str, quick: bool, steps: int) -> subprocess.Popen[bytes]:
    """Pre-train (or find cached) the 8x base in a second process, one thread, so both cores work."""
    kw = f"steps={steps}" + (", n_embd=64, n_layer=2" if quick else "")
    code = (
        "import torch; torch.set_num_threads(1); from training.world.base import ensure_base_model; "
        f"print(ensure_base_model({str(cache)!r}, {size!r}, {kw}))"
    )
    log = open(cache.parent / f"base-{size}.log", "w")  # noqa: SIM115 - the child process owns it
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)


def start_extra(name: str, quick: bool, batch: Path, sft: Path, root: Path) -> subprocess.Popen[bytes]:
    """Train an EXTRA_POLICIES stage in a second process (root/<name>.log; the last line is its output)."""
    args = [name, quick, str(batch), str(sft), str(root / name.lower())]
    code = f"import bench.alignment as a; a.run_extra(*{args!r})"
    log = open(root / f"{name.lower()}.log", "w")  # noqa: SIM115 - the child process owns it
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
