"""Files that survive a power loss: fsync the contents and the directory entries of a rename.

A committed row may point at a directory only once that directory is on disk in full, so the
files and the temporary directory are synced before the rename, and the parent after it.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync one file or directory (directories are opened read-only, as POSIX allows)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(tmp: Path, final: Path) -> None:
    """Sync every file under `tmp` and its directories, rename `tmp` to `final`, sync the parent."""
    for path in sorted(tmp.rglob("*"), reverse=True):  # files before the directories holding them
        fsync_path(path)
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)
