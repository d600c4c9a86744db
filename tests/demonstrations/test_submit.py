"""Demonstrations and labeler-written prompts: stored once, traceable, validated."""

from __future__ import annotations

import pytest

from app.demonstrations.models import Demonstration
from app.demonstrations.service import TextInvalid, submit_demonstration, submit_written_prompt
from app.enums import AssignmentStatus, PIIStatus, TaskKind
from app.errors import AlreadySubmitted
from app.labeling import service as labeling
from app.prompts.models import Prompt


def test_demonstration_is_stored_with_labeler_time_and_guidelines(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    t = factory.task(q)
    user = factory.user()
    a = labeling.next_task(db, user)
    assert a is not None
    d = submit_demonstration(db, user, a.id, "  The answer.  ")
    assert (d.text, d.user_id, d.task_id, d.prompt_id) == ("The answer.", user.id, t.id, t.prompt_id)
    assert d.guideline_version_id == q.guidelines[0].id and d.time_spent_ms >= 0
    assert a.status == AssignmentStatus.submitted.value


def test_empty_or_oversize_demonstration_is_rejected_and_nothing_stored(db, factory, monkeypatch) -> None:
    from app.config import get_settings

    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    user = factory.user()
    a = labeling.next_task(db, user)
    assert a is not None
    with pytest.raises(TextInvalid, match="empty"):
        submit_demonstration(db, user, a.id, "   ")
    monkeypatch.setattr(get_settings(), "max_text_chars", 10)
    with pytest.raises(TextInvalid, match="limit is 10"):
        submit_demonstration(db, user, a.id, "x" * 11)
    assert db.query(Demonstration).count() == 0 and a.status == AssignmentStatus.leased.value


def test_double_submitted_demonstration_is_stored_once(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    user = factory.user()
    a = labeling.next_task(db, user)
    assert a is not None
    d1 = submit_demonstration(db, user, a.id, "one")
    d2 = submit_demonstration(db, user, a.id, "one")  # a double click: the same text again
    assert d1.id == d2.id and db.query(Demonstration).filter_by(assignment_id=a.id).count() == 1
    with pytest.raises(AlreadySubmitted):  # a different text from a second tab is refused, not stored
        submit_demonstration(db, user, a.id, "two")
    assert [d.text for d in db.query(Demonstration).filter_by(assignment_id=a.id)] == ["one"]


def test_written_prompt_goes_to_the_queue_pool_for_review(db, factory) -> None:
    q = factory.queue(TaskKind.write_prompt)
    t = labeling.create_write_prompt_tasks(db, q, ["few_shot"])[0]
    user = factory.user()
    a = labeling.next_task(db, user)
    assert a is not None and a.task_id == t.id
    p = submit_written_prompt(db, user, a.id, "Q: 2+2\nA: 4\nQ: 3+3\nA:")
    expected = ("labeler", user.id, q.id, PIIStatus.clear.value)  # screened: nothing personal
    assert (p.source, p.author_id, p.queue_id, p.pii_status) == expected
    assert p.meta["hint"] == "few_shot" and p.meta["assignment_id"] == a.id
    again = submit_written_prompt(db, user, a.id, "Q: 2+2\nA: 4\nQ: 3+3\nA:")
    assert again.id == p.id and db.query(Prompt).filter_by(author_id=user.id).count() == 1
    with pytest.raises(AlreadySubmitted):
        submit_written_prompt(db, user, a.id, "different")
    assert db.query(Prompt).filter_by(author_id=user.id).count() == 1
