"""A written prompt is screened for personal data before its request touches the database
(on SQLite the first statement takes the write lock, which screening must never hold)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from app.enums import PIIStatus, TaskKind
from app.prompts import pii


def test_written_prompt_is_screened_before_the_first_statement(login, factory, db, monkeypatch) -> None:
    from app.labeling.service import create_write_prompt_tasks
    from app.prompts.models import Prompt

    q = factory.queue(TaskKind.write_prompt)
    create_write_prompt_tasks(db, q, ["use_case"])
    web = login("labeler")
    aid = web.post("/label/next", data={}).headers["location"].rsplit("/", 1)[-1]
    events: list[str] = []
    real_detect = pii.detect

    def detect(text: str) -> list[pii.Finding]:
        events.append("screen")
        return real_detect(text)

    def statement(*_: Any) -> None:
        events.append("sql")

    monkeypatch.setattr(pii, "detect", detect)
    uid = web.user.id  # read before the expunge: a detached user cannot load it
    db.expunge_all()  # the request loads its user with a statement, as in production
    connection = db.connection()
    event.listen(connection, "before_cursor_execute", statement)
    try:
        resp = web.post(f"/label/a/{aid}/prompt", data={"text": "Write to jane.doe@example.com for me."})
    finally:
        event.remove(connection, "before_cursor_execute", statement)
    assert resp.status_code == 303, resp.text[:300]
    assert events[0] == "screen" and events.count("screen") == 1, events[:5]
    prompt = db.query(Prompt).filter_by(author_id=uid).one()
    assert prompt.pii_status == PIIStatus.held.value and prompt.pii_findings[0]["kind"] == "email"


def test_anonymous_post_gets_no_screening(client, monkeypatch) -> None:
    calls: list[str] = []

    def detect(text: str) -> list[pii.Finding]:
        calls.append(text)
        return []

    monkeypatch.setattr(pii, "detect", detect)
    resp = client.post("/label/a/1/prompt", data={"text": "hi " * 1000})
    assert resp.status_code in {401, 403, 303} and calls == []
