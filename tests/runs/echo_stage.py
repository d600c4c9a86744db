"""A stage that exists only in tests: its config and its trainer (torch-free: it copies the policy)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.callbacks import Callbacks
from training.checkpoints import MANIFEST, write_model_dir


@dataclass
class EchoConfig:
    """Settings of the echo stage."""

    repeat: int = 1
    note: str = "echo"


def run_echo(
    config: EchoConfig,
    batch_dir: str | Path,
    policy_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: int | None = None,
    method: str | None = None,
) -> Path:
    """Write a copy of the input policy as a new model directory, reporting one step."""
    cbs = Callbacks(callbacks)
    cbs.check_stop()
    cbs.progress("echo", 1, 1, {"loss": 0.5, "repeat": config.repeat})

    def write(tmp: Path) -> None:
        shutil.copytree(policy_dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST))

    return write_model_dir(
        out_dir,
        write,
        kind="policy",
        parent=str(policy_dir),
        run=run,
        method=method,
        export_batch=str(batch_dir),
        config={"echo": {"repeat": config.repeat, "note": config.note}},
        metrics={"repeat": config.repeat},
    )
