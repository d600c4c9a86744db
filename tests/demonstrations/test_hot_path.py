"""A demonstration submitted through the web takes the hot path (app.labeling.fast) and stores
exactly what the service stores, in a few statements; anything unusual still goes through the
service (empty text, a double submit)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling import service as labeling
from app.labeling.models import Assignment, Task
from app.quality.models import LabelerAgreement
from tests.helpers import sql_statements


def _submit(db: Any, factory: Any, login: Any, text: str, *, overlap: int = 1) -> tuple[Any, Any, Any]:
    """A labeler with a lease on a demonstration task posts `text`: (response, assignment, user)."""
    q = factory.queue(TaskKind.demonstration, overlap=overlap)
    factory.task(q)
    factory.task(q)
    web = login("labeler")
    a = labeling.next_task(db, web.user, q.id)
    assert a is not None
    db.commit()
    with sql_statements() as seen:
        r = web.post(f"/label/a/{a.id}/demonstration", data={"text": text})
    web.statements = seen
    return r, a, web


def _stored(db: Any, a: Any, user_id: int) -> dict[str, Any]:
    """What a submit leaves behind, without ids and clock readings."""
    db.expire_all()
    d = db.scalar(select(Demonstration).where(Demonstration.assignment_id == a.id))
    assignment = db.get(Assignment, a.id)
    task = db.get(Task, a.task_id)
    counter = db.scalar(select(LabelerAgreement).where(LabelerAgreement.user_id == user_id))
    leased = db.scalars(select(Assignment).where(Assignment.user_id == user_id, Assignment.id != a.id)).all()
    return {
        "demo": (d.text, d.user_id == user_id, d.task_id == task.id, d.prompt_id == task.prompt_id,
                 d.guideline_version_id == assignment.guideline_version_id is not None, d.time_spent_ms >= 0),
        "assignment": (assignment.status, assignment.draft_text, assignment.finished_at is not None,
                       assignment.time_spent_ms == d.time_spent_ms,
                       assignment.lease_expires_at == assignment.finished_at),
        "task": (task.done_count, task.status, task.completed_at is not None),
        "labels": counter.labels if counter is not None else None,
        "next": [(x.status, x.task_id != a.task_id) for x in leased],
    }


@pytest.mark.parametrize("overlap", [1, 2])
def test_the_hot_path_stores_what_the_service_stores(db, factory, login, monkeypatch, overlap) -> None:
    hot, a, web = _submit(db, factory, login, "  The answer.  ", overlap=overlap)
    assert hot.status_code == 303 and hot.headers["location"].startswith("/label/a/")
    got_hot = _stored(db, a, web.user.id)
    hot_statements = len(web.statements)

    monkeypatch.setattr(get_settings(), "web_hot_path", False)
    slow, b, web2 = _submit(db, factory, login, "  The answer.  ", overlap=overlap)
    assert slow.status_code == 303 and slow.headers["location"].startswith("/label/a/")
    assert got_hot == _stored(db, b, web2.user.id)
    assert got_hot["demo"][0] == "The answer." and got_hot["labels"] == 1
    # One request: the user and lock, the writes, the next lease, the counter (and no ORM loads).
    assert hot_statements <= (8 if db.get_bind().dialect.name == "postgresql" else 11), web.statements
    assert hot_statements < len(web2.statements)


def test_empty_text_and_a_double_submit_go_through_the_service(db, factory, login) -> None:
    r, a, web = _submit(db, factory, login, "   ")
    assert r.status_code == 422 and "empty" in r.text
    assert db.scalar(select(Demonstration).where(Demonstration.assignment_id == a.id)) is None
    assert web.post(f"/label/a/{a.id}/demonstration", data={"text": "one"}).status_code == 303
    again = web.post(f"/label/a/{a.id}/demonstration", data={"text": "one"})  # a double click
    assert again.status_code == 303
    assert db.scalars(select(Demonstration).where(Demonstration.assignment_id == a.id)).all()[0].text == "one"
    assert len(db.scalars(select(Demonstration).where(Demonstration.assignment_id == a.id)).all()) == 1
