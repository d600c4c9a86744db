"""Conversations as prompts: import and ingestion of "messages" rows, dedup of the whole
conversation, the per-user cap, screening of every message and redaction inside one turn."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.enums import PIIStatus, TaskKind
from app.errors import AppError
from app.labeling.models import Task
from app.prompts import conversation, review, service
from app.prompts.models import Prompt


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "You are a patient tutor."}
CONV = [SYSTEM, user("What makes the tides?"), bot("Mostly the Moon's pull."), user("Why two a day?")]


def _jsonl(*rows: Any) -> io.BytesIO:
    return io.BytesIO(b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in rows))


def _import(db, queue, rows: io.BytesIO, mode: str = "valid_rows"):  # type: ignore[no-untyped-def]
    return service.import_file(db, get_settings(), queue.id, "c.jsonl", rows, mode, None)


def _prompts(db, queue) -> list[Prompt]:  # type: ignore[no-untyped-def]
    return list(db.scalars(select(Prompt).where(Prompt.queue_id == queue.id).order_by(Prompt.id)))


MIXED = [
    {"messages": CONV, "user_id": "u1"},  # 1 ok: a conversation
    {"prompt": "A plain prompt still works"},  # 2 ok
    {"messages": []},  # 3 empty
    {"messages": [user("Hi"), bot("Hello!")]},  # 4 ends with the assistant
    {"messages": [user("Hi"), {"role": "wizard", "content": "x"}, user("?")]},  # 5 unknown role
    {"messages": [user("Hi"), {"role": "user"}]},  # 6 no content
    {"messages": [user("Hi"), bot("Yo"), SYSTEM, user("?")]},  # 7 system in the middle
    {"messages": [user("Hi"), bot("   "), user("?")]},  # 8 empty turn
    {"messages": [user("x" * 20_001), bot("a"), user("b")]},  # 9 too long
    {"messages": "Hi"},  # 10 not a list
    {"messages": CONV, "prompt": "both"},  # 11 ambiguous
    {"messages": [user("bell \u0007"), bot("a"), user("b")]},  # 12 control character
    {"messages": [user("  Just one user turn  ")]},  # 13 ok: stored as a plain prompt
]


def test_messages_rows_are_imported_and_malformed_ones_reported_by_line(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    imp = _import(db, queue, _jsonl(*MIXED))
    reasons = {r["line"]: r["reason"] for r in imp.report if r["kind"] == "rejected"}
    assert (imp.accepted, imp.rejected) == (3, 10), imp.report
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "non-empty list" in reasons[3] and "non-empty list" in reasons[10]
    assert "must end with the user's turn" in reasons[4]
    assert "message 2: 'role' must be one of system, user, assistant" in reasons[5]
    assert "message 2: 'content' must be a string" in reasons[6]
    assert "message 3: a system message may only open the conversation" in reasons[7]
    assert "message 2: 'content' is empty" in reasons[8]
    assert "message 1: 'content' is 20001 characters long" in reasons[9]
    assert "not both" in reasons[11]
    assert "message 1: 'content' contains control characters" in reasons[12]
    conv, plain, single = _prompts(db, queue)
    assert conv.messages == CONV and conv.external_user_id == "u1"
    assert conv.text == conversation.transcript(CONV)
    assert conv.text.startswith("System: You are a patient tutor.\n\nUser: What makes the tides?")
    assert plain.messages is None and plain.text == "A plain prompt still works"
    assert single.messages is None and single.text == "Just one user turn"
    # One task per prompt, conversations included.
    assert len(db.scalars(select(Task).where(Task.queue_id == queue.id)).all()) == 3


def test_all_or_nothing_refuses_a_file_with_one_bad_conversation(db, factory) -> None:
    queue = factory.queue(TaskKind.ranking)
    imp = _import(db, queue, _jsonl({"messages": CONV}, {"messages": [bot("no user")]}), "all_or_nothing")
    assert imp.status == "failed" and imp.accepted == 0 and imp.report[0]["line"] == 2
    assert _prompts(db, queue) == []


def test_dedup_compares_the_whole_normalised_conversation(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    long_system = {"role": "system", "content": "You are a helpful assistant. " * 20}  # > the prefix
    a = [long_system, user("Name a colour."), bot("Blue."), user("Another?")]
    b = [long_system, user("Name a colour."), bot("Blue."), user("And a fruit?")]
    same_as_a = [{"role": "system", "content": long_system["content"].upper()},
                 user("name  a colour."), bot("blue."), user("ANOTHER?")]
    imp = _import(db, queue, _jsonl({"messages": a}, {"messages": b}, {"messages": same_as_a}))
    assert (imp.accepted, imp.duplicates) == (2, 1)
    assert imp.report == [{"line": 3, "kind": "duplicate", "reason": "repeats an earlier conversation"}]
    # The same turns as a different conversation: roles count.
    swapped = [long_system, bot("Name a colour."), user("Blue."), user("Another?")]
    assert _import(db, queue, _jsonl({"messages": swapped})).accepted == 1


def test_the_per_user_cap_counts_a_conversation_as_one_prompt(db, factory) -> None:
    settings = get_settings().model_copy(update={"prompt_max_per_user": 2})
    queue = factory.queue(TaskKind.demonstration)
    rows = [{"messages": [user(f"Q{i}"), bot("A"), user(f"More {i}")], "user_id": "heavy"} for i in range(3)]
    imp = service.import_file(db, settings, queue.id, "c.jsonl", _jsonl(*rows), "valid_rows", None)
    assert (imp.accepted, imp.capped) == (2, 1) and imp.report[0]["line"] == 3


def test_every_message_is_screened_and_a_redaction_stays_inside_its_turn(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    msgs = [SYSTEM, user("My mail is jane.doe@example.com, remember it."), bot("Noted."), user("What is it?")]
    imp = _import(db, queue, _jsonl({"messages": msgs}))
    assert imp.held_for_pii == 1
    (prompt,) = _prompts(db, queue)
    assert prompt.pii_status == PIIStatus.held.value
    (finding,) = prompt.pii_findings
    assert finding["kind"] == "email" and finding["message"] == 1
    assert prompt.text[finding["start"]:finding["end"]] == "jane.doe@example.com"
    # A string that runs across two turns cannot be redacted (the turn boundary would be lost).
    with pytest.raises(AppError, match="crosses a turn boundary"):
        review.preview_redaction(db, prompt.id, [], "it.\n\nAssistant: Noted")
    text, _spans = review.preview_redaction(db, prompt.id, [0], "Noted")
    admin = factory.user("admin")
    review.redact_prompt(db, prompt.id, admin, [0], "Noted", confirmed_digest=review.digest(text))
    db.refresh(prompt)
    assert prompt.pii_status == PIIStatus.redacted.value
    assert prompt.messages == [SYSTEM, user("My mail is [EMAIL], remember it."), bot("[REDACTED]."),
                               user("What is it?")]
    assert prompt.text == text == conversation.transcript(prompt.messages)


def test_screening_an_import_happens_before_its_batch_locks_users(db, factory, monkeypatch) -> None:
    """Screening runs as a row is read, before the batch's per-user locks and inserts."""
    from app.prompts import importer, pii

    events: list[str] = []
    real = pii.detect
    monkeypatch.setattr(pii, "detect", lambda text: events.append("screen") or real(text))
    monkeypatch.setattr(importer.Importer, "_lock_users",
                        lambda self, users: events.append("lock"))
    queue = factory.queue(TaskKind.demonstration)
    _import(db, queue, _jsonl({"messages": CONV, "user_id": "u"}))
    assert events == ["screen"] * 4 + ["lock"]  # each of the four messages, then the lock


def test_ingestion_api_takes_conversations(db, factory, client) -> None:
    from app.auth.service import create_api_token

    queue = factory.queue(TaskKind.ranking, name="chat-queue")
    _, plain = create_api_token(db, "chat", ["prompts:write"], None)
    db.commit()
    body = {
        "queue": "chat-queue",
        "prompts": [
            {"messages": CONV, "user_id": "cust-9", "meta": {"app": "chat"}},
            {"messages": [user("Hi"), bot("Hello")]},
            {"prompt": "Plain, as before"},
        ],
    }
    r = client.post("/api/prompts", json=body, headers={"Authorization": f"Bearer {plain}"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (2, 1)
    assert out["report"][0]["line"] == 2 and "must end with the user's turn" in out["report"][0]["reason"]
    conv = db.scalar(select(Prompt).where(Prompt.queue_id == queue.id, Prompt.messages.is_not(None)))
    assert conv is not None and conv.messages == CONV and conv.source == "api"
    assert conv.meta["app"] == "chat"


def test_the_sample_conversations_file_exercises_the_rules(db, factory) -> None:
    from pathlib import Path

    queue = factory.queue(TaskKind.ranking)
    path = Path(__file__).resolve().parents[2] / "static" / "admin" / "sample-conversations.jsonl"
    with path.open("rb") as fh:
        imp = _import(db, queue, fh)  # type: ignore[arg-type]
    assert (imp.accepted, imp.rejected, imp.duplicates, imp.held_for_pii) == (5, 3, 1, 1)
    assert sum(p.messages is not None for p in _prompts(db, queue)) == 4  # a lone user turn is plain


def test_the_review_page_highlights_a_finding_in_an_earlier_turn(db, factory, login) -> None:
    queue = factory.queue(TaskKind.demonstration)
    msgs = [user("Write to jane.doe@example.com for me."), bot("What should it say?"), user("Say hi.")]
    _import(db, queue, _jsonl({"messages": msgs}))
    (prompt,) = _prompts(db, queue)
    page = login("admin").get(f"/admin/pii/{prompt.id}").text
    assert '<mark class="pii" title="email">jane.doe@example.com' in page
    assert "User: Write to " in page and "Assistant: What should it say?" in page


def test_ingested_conversations_are_screened_before_the_first_statement(
    db, factory, client, monkeypatch
) -> None:
    """On SQLite the first statement takes the write lock, which screening must never hold."""
    from sqlalchemy import event

    from app.auth.service import create_api_token
    from app.prompts import pii

    factory.queue(TaskKind.ranking, name="screened-queue")
    _, plain = create_api_token(db, "screen", ["prompts:write"], None)
    db.commit()
    events: list[str] = []
    real = pii.detect
    monkeypatch.setattr(pii, "detect", lambda text: events.append("screen") or real(text))
    db.expunge_all()
    connection = db.connection()
    listener = lambda *_: events.append("sql")  # noqa: E731
    event.listen(connection, "before_cursor_execute", listener)
    msgs = [user("Mail jane.doe@example.com"), bot("Done."), user("Thanks!")]
    try:
        r = client.post("/api/prompts", json={"queue": "screened-queue", "prompts": [{"messages": msgs}]},
                        headers={"Authorization": f"Bearer {plain}"})
    finally:
        event.remove(connection, "before_cursor_execute", listener)
    assert r.status_code == 201 and r.json()["held_for_pii"] == 1, r.text
    assert events[:3] == ["screen"] * 3 and events.count("screen") == 3, events[:6]
    held = db.scalar(select(Prompt).where(Prompt.messages.is_not(None)))
    assert held is not None and held.pii_findings[0]["message"] == 0
