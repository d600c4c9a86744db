"""Imports and the ingestion API screen every row for personal data before their request's first
statement: on SQLite that statement takes the write lock, which a long screening must never hold."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select

from app.enums import PIIStatus, TaskKind
from app.prompts import pii
from app.prompts.models import Prompt

ROWS = [
    {"prompt": "Mail me at jane.doe@example.com about the trip.", "user_id": "u1"},
    {"prompt": "Explain photosynthesis to a child.", "user_id": "u2"},
    {"prompt": 5},  # rejected: never screened
    {"prompt": "Write a haiku about rain.", "user_id": "u3"},
]


@contextmanager
def _trace(db, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record "screen" for every personal-data check and "sql" for every statement, in order."""
    events: list[str] = []
    real_detect: Callable[[str], list[pii.Finding]] = pii.detect

    def detect(text: str) -> list[pii.Finding]:
        events.append("screen")
        return real_detect(text)

    def statement(*_: Any) -> None:
        events.append("sql")

    monkeypatch.setattr(pii, "detect", detect)
    db.expunge_all()  # the request loads its user (or token) with a statement, as in production
    connection = db.connection()
    event.listen(connection, "before_cursor_execute", statement)
    try:
        yield events
    finally:
        event.remove(connection, "before_cursor_execute", statement)


def _screened_first(events: list[str], screens: int) -> None:
    assert events.count("screen") == screens, events
    assert "sql" in events and events.index("sql") > max(i for i, e in enumerate(events) if e == "screen"), (
        events[:8]
    )


def _stored(db, queue) -> dict[str, str]:
    return dict(db.execute(select(Prompt.text, Prompt.pii_status).where(Prompt.queue_id == queue.id)).all())


def test_upload_is_screened_whole_before_the_first_statement(login, factory, db, monkeypatch) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.demonstration)
    body = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)
    with _trace(db, monkeypatch) as events:
        resp = web.post(
            f"/admin/queues/{queue.id}/imports",
            data={"mode": "valid_rows"},
            files={"file": ("p.jsonl", io.BytesIO(body), "application/x-ndjson")},
        )
    assert resp.status_code == 303, resp.text[:300]
    _screened_first(events, screens=3)
    stored = _stored(db, queue)
    assert stored[str(ROWS[0]["prompt"])] == PIIStatus.held.value and len(stored) == 3
    assert stored[str(ROWS[1]["prompt"])] == PIIStatus.clear.value


def test_ingestion_api_screens_before_the_first_statement(client, factory, db, monkeypatch) -> None:
    from app.auth.service import create_api_token

    queue = factory.queue(TaskKind.ranking, name="screened-api")
    _, plain = create_api_token(db, "product", ["prompts:write"], None)
    db.commit()
    with _trace(db, monkeypatch) as events:
        resp = client.post(
            "/api/prompts",
            json={"queue": "screened-api", "prompts": ROWS},
            headers={"Authorization": f"Bearer {plain}"},
        )
    assert resp.status_code == 201, resp.text[:300]
    assert (resp.json()["accepted"], resp.json()["held_for_pii"]) == (3, 1)
    _screened_first(events, screens=3)
    assert _stored(db, queue)[str(ROWS[0]["prompt"])] == PIIStatus.held.value


def test_api_without_a_token_gets_no_screening(client, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(pii, "detect", lambda text: calls.append(text) or [])
    resp = client.post("/api/prompts", json={"queue": "q", "prompts": [{"prompt": "hi " * 1000}]})
    assert resp.status_code == 401 and calls == []


def test_cli_import_screens_before_opening_its_session(committed_db, monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from app import cli
    from app import db as app_db
    from tests.factories import Factory

    queue = Factory(committed_db).queue(TaskKind.demonstration)
    committed_db.commit()
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    events: list[str] = []
    real_detect, real_scope = pii.detect, app_db.session_scope

    @contextmanager
    def scope() -> Iterator[Any]:
        events.append("session")
        with real_scope() as session:
            yield session

    monkeypatch.setattr(pii, "detect", lambda text: events.append("screen") or real_detect(text))
    monkeypatch.setattr(app_db, "session_scope", scope)
    result = CliRunner().invoke(cli.cli, ["prompts", "import", str(path), "--queue", str(queue.id)])
    assert result.exit_code == 0, result.output
    assert events == ["screen"] * 3 + ["session"]
