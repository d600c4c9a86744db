"""Nothing a committed row points at can be torn by a power loss: export batches and model
directories are fsynced (files, then the directory) before the rename and the parent after it;
SQLite commits with synchronous=FULL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.exports import service
from app.exports.schemas import parse_filters


class SyncLog:
    """Records, in order, the path of each fsync and each rename."""

    def __init__(self, monkeypatch: Any) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

        def fsync(fd: int) -> None:
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            self.events.append(("rename", str(Path(src).resolve())))
            real_replace(src, dst)

        def rename(src: Any, dst: Any) -> None:
            self.events.append(("rename", str(Path(src).resolve())))
            real_rename(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "rename", rename)

    def check(self, final: Path) -> None:
        """Every file of `final` and the directory were synced before its rename; the parent after."""
        renames = [i for i, (kind, _) in enumerate(self.events) if kind == "rename"]
        assert renames, self.events
        at = renames[-1]
        tmp = self.events[at][1]
        before = {p for kind, p in self.events[:at] if kind == "fsync"}
        for path in final.rglob("*"):
            assert str(Path(tmp) / path.relative_to(final)) in before, f"{path.name} not synced before rename"
        assert tmp in before
        assert ("fsync", str(final.parent.resolve())) in self.events[at + 1:]


def test_an_export_batch_is_synced_before_it_is_renamed_into_place(db, factory, monkeypatch) -> None:
    factory.prompt(text="Durable prompt")
    log = SyncLog(monkeypatch)
    batch = service.create_export_batch(db, parse_filters({}), None)
    log.check(Path(batch.path))


def test_a_model_directory_is_synced_before_it_is_renamed_into_place(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from training.checkpoints import write_model_dir

    def files(d: Path) -> None:
        (d / "weights.bin").write_bytes(b"\0" * 100)
        (d / "tokenizer").mkdir()
        (d / "tokenizer" / "vocab.json").write_text("{}")

    log = SyncLog(monkeypatch)
    out = write_model_dir(tmp_path / "v1", files, kind="policy", parent=None, run=None, export_batch=None,
                          config={}, metrics={})
    log.check(out)


def test_sqlite_commits_are_full_sync(db) -> None:
    if db.get_bind().dialect.name != "sqlite":
        pytest.skip("a SQLite pragma")
    assert db.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
