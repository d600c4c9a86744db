"""Many labelers at once, each with its own database session: no task exceeds its overlap,
no labeler gets an item twice, and no slot is lost."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select

from app.auth.models import User
from app.db import session_factory
from app.demonstrations.models import Demonstration
from app.demonstrations.service import submit_demonstration
from app.enums import TaskKind, TaskStatus
from app.labeling import service
from app.labeling.models import Assignment, Task
from tests.factories import Factory

LABELERS = 12
TASKS = 10
OVERLAP = 3


def _work(user_id: int, start: threading.Barrier, errors: list[BaseException], served: Counter[int]) -> None:
    session = session_factory()()
    try:
        user = session.get(User, user_id)
        assert user is not None
        session.commit()  # on SQLite every transaction holds the write lock: never wait inside one
        start.wait()
        while True:
            a = service.next_task(session, user)
            if a is None:
                session.commit()
                return
            task_id = a.task_id
            session.commit()  # the lease is visible to everyone from here
            submit_demonstration(session, user, a.id, f"answer by {user_id}")
            session.commit()
            served[task_id] += 1
    except BaseException as exc:
        session.rollback()
        errors.append(exc)
    finally:
        session.close()


def test_concurrent_labelers_fill_every_slot_exactly_once(committed_db) -> None:
    f = Factory(committed_db)
    q = f.queue(TaskKind.demonstration, overlap=OVERLAP)
    tasks = [f.task(q) for _ in range(TASKS)]
    users = [f.user() for _ in range(LABELERS)]
    committed_db.commit()

    start = threading.Barrier(LABELERS)
    errors: list[BaseException] = []
    served: Counter[int] = Counter()
    threads = [threading.Thread(target=_work, args=(u.id, start, errors, served)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    check = session_factory()()
    try:
        per_task = dict(check.execute(
            select(Demonstration.task_id, func.count(Demonstration.id)).group_by(Demonstration.task_id)
        ).all())
        distinct = dict(check.execute(
            select(Demonstration.task_id, func.count(func.distinct(Demonstration.user_id)))
            .group_by(Demonstration.task_id)
        ).all())
        assert per_task == {t.id: OVERLAP for t in tasks}  # none lost, none over
        assert distinct == per_task  # never twice to one labeler
        rows = check.scalars(select(Task).where(Task.queue_id == q.id)).all()
        assert all(r.done_count == OVERLAP and r.status == TaskStatus.done.value for r in rows)
        assert check.scalar(select(func.count(Assignment.id)).where(Assignment.status == "leased")) == 0
        assert sum(served.values()) == TASKS * OVERLAP
    finally:
        check.close()
