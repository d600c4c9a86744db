"""Which files a round's settings may make a worker read: only what the platform itself wrote.

A path in a stage's settings is read by a training worker with the worker's rights, so ops
could otherwise turn any file it can read (`/proc/self/environ`, keys) into training text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import get_settings

TEXT_SUFFIXES = (".jsonl", ".txt")


def check_data_path(value: Any) -> str:
    """The resolved path when `value` is a .jsonl/.txt file under DATA_DIR (export batches live
    there); ValueError otherwise. Symlinks and `..` are resolved before the check."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a path to a .jsonl or .txt file")
    root = get_settings().data_dir.resolve()
    path = Path(value.strip())
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"must be an export batch or a file under the data directory ({root})")
    if resolved.suffix not in TEXT_SUFFIXES or not resolved.is_file():
        raise ValueError(f"must be an existing {' or '.join(TEXT_SUFFIXES)} file under {root}")
    return str(resolved)


def check_stage_paths(settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stage settings with each file setting checked and resolved (see check_data_path)."""
    from app.runs import stages

    checked = {stage: dict(values) for stage, values in settings.items()}
    for stage, keys in ((s.name, s.path_settings) for s in stages.STAGES.values()):
        for key in keys:
            if checked.get(stage, {}).get(key) is not None:
                try:
                    checked[stage][key] = check_data_path(checked[stage][key])
                except ValueError as exc:
                    raise ValueError(f"{stage}.{key} {exc}") from None
    return checked
