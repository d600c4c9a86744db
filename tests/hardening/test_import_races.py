"""Two imports of the same rows at once store each prompt once, in one split, and keep the
per-user cap: the unique dedup key (ON CONFLICT DO NOTHING) and a per-user lock decide."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_factory
from app.enums import TaskKind
from app.prompts.models import Prompt, PromptImport
from app.prompts.service import import_file
from tests.factories import Factory


def _jsonl(rows: list[dict[str, str]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _race(queue_id: int, first: bytes, second: bytes) -> list[Any]:
    """Import `first` (kept uncommitted for a second) while `second` is imported in a thread."""
    out: list[Any] = []

    def other() -> None:
        with session_factory()() as s:
            imp = import_file(s, get_settings(), queue_id, "b.jsonl", io.BytesIO(second), "valid_rows", None)
            out.append((imp.accepted, imp.duplicates, imp.capped))
            s.commit()

    with session_factory()() as s:
        imp = import_file(s, get_settings(), queue_id, "a.jsonl", io.BytesIO(first), "valid_rows", None)
        out.append((imp.accepted, imp.duplicates, imp.capped))
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(1.0)  # the second import reaches its insert and waits on the first
        s.commit()
    thread.join(30)
    return out


def test_concurrent_imports_store_each_prompt_once(committed_db) -> None:
    queue = Factory(committed_db).queue(TaskKind.demonstration)
    committed_db.commit()
    rows = [{"prompt": f"Concurrent prompt number {i} about rivers", "user_id": f"u{i}"} for i in range(20)]
    out = _race(queue.id, _jsonl(rows), _jsonl(rows))
    assert out[0] == (20, 0, 0) and out[1] == (0, 20, 0), out
    count = committed_db.scalar(select(func.count()).select_from(Prompt).where(Prompt.queue_id == queue.id))
    assert count == 20
    report = committed_db.scalars(select(PromptImport).order_by(PromptImport.id)).all()[-1].report
    assert {r["kind"] for r in report} == {"duplicate"}


def test_concurrent_imports_keep_the_per_user_cap(committed_db, monkeypatch) -> None:
    monkeypatch.setattr(get_settings(), "prompt_max_per_user", 4)
    queue = Factory(committed_db).queue(TaskKind.demonstration)
    committed_db.commit()
    first = [{"prompt": f"First file prompt {i} on mountains", "user_id": "same-user"} for i in range(3)]
    second = [{"prompt": f"Second file prompt {i} on oceans", "user_id": "same-user"} for i in range(3)]
    out = _race(queue.id, _jsonl(first), _jsonl(second))
    assert out[0] == (3, 0, 0) and out[1] == (1, 0, 2), out
    stored = committed_db.scalar(select(func.count()).where(Prompt.external_user_id == "same-user"))
    assert stored == 4
