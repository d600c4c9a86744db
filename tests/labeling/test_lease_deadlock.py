"""A submit leases the next task in its own transaction, while it still holds the submitted task's
row lock. Two labelers who each submit one task and whose only eligible next task is the other's
must not deadlock into a 503 (seen in CI: 'submit 503' at the end of a drained queue, where the
lease's second pass waits for locked rows).

Each labeler below holds a lock on "its" task (as a submit does) and then leases; the only task
it may take is the one the other holds. Both leases must return (a task or None), neither may
raise, and afterwards the queue hands out every slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from app.auth.models import User
from app.db import get_engine, session_factory, utcnow
from app.enums import TaskKind
from app.labeling import hotpath, leasing, service
from app.labeling.models import Assignment, Task
from tests.factories import Factory


def _crossed(committed_db: Any) -> tuple[list[int], list[int], int]:
    """Two users, two tasks of one queue; each user already did one task, so each is eligible
    only for the other's. Returns (user ids, task ids, queue id)."""
    if committed_db.get_bind().dialect.name != "postgresql":
        pytest.skip("row locks that wait are PostgreSQL's; SQLite serializes writers instead")
    f = Factory(committed_db)
    q = f.queue(TaskKind.demonstration, overlap=2)
    tasks = [f.task(q), f.task(q)]
    users = [f.user(), f.user()]
    committed_db.flush()
    for user, task in zip(users, tasks, strict=True):
        committed_db.add(Assignment(task_id=task.id, user_id=user.id, status="submitted",
                                    lease_expires_at=utcnow()))
    committed_db.commit()
    return [u.id for u in users], [t.id for t in tasks], q.id


Lease = Callable[[int, int, threading.Barrier], Any]


def _race(lease: Lease, users: list[int], tasks: list[int]) -> list[Any]:
    """Run lease(user, own task, barrier) for both users at once; their results or exceptions."""
    start = threading.Barrier(2)
    out: list[Any] = [None, None]

    def run(i: int) -> None:
        try:
            out[i] = lease(users[i], tasks[i], start)
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_orm_leases_after_a_submit_wait_for_no_row(committed_db) -> None:
    users, tasks, queue_id = _crossed(committed_db)

    def lease(user_id: int, own_task: int, start: threading.Barrier) -> tuple[int | None, str]:
        db = session_factory()()
        try:
            db.execute(select(Task.id).where(Task.id == own_task).with_for_update())  # the submit's lock
            user = db.get(User, user_id)
            assert user is not None
            start.wait()
            a = service.next_task(db, user, queue_id, wait=False)  # as routes.advance leases
            got = a.task_id if a is not None else None
            told = service.nothing_next(db, user_id, queue_id) if a is None else ""
            start.wait()  # both looked while both locks were held
            db.commit()
            return got, told
        finally:
            db.close()

    out = _race(lease, users, tasks)
    assert not [r for r in out if isinstance(r, BaseException)], out
    # Neither waited (a deadlock before: each waited for the other's task) and each is told
    # that the task left is being handed out, not that the queue is empty.
    assert out == [(None, leasing.BUSY_NEXT), (None, leasing.BUSY_NEXT)]
    for user_id, task_id in zip(users, reversed(tasks), strict=True):
        db = session_factory()()
        try:
            user = db.get(User, user_id)
            assert user is not None
            a = service.next_task(db, user, queue_id)  # "Next task" afterwards takes it
            assert a is not None and a.task_id == task_id
            db.commit()
        finally:
            db.close()


def test_hot_path_leases_after_a_submit_wait_for_no_row(committed_db) -> None:
    users, tasks, queue_id = _crossed(committed_db)

    def lease(user_id: int, own_task: int, start: threading.Barrier) -> int | None:
        with get_engine().connect() as conn, conn.begin():
            conn.execute(select(Task.id).where(Task.id == own_task).with_for_update())
            start.wait()
            aid = hotpath.lease_next(conn, user_id, queue_id, utcnow(), 600)
            start.wait()
            return aid

    out = _race(lease, users, tasks)
    assert out == [None, None]


def test_a_waiting_lease_releases_a_task_it_could_not_take(committed_db) -> None:
    """The waiting pass locks one candidate at a time: a task whose slot went to someone else
    while it waited is released before it waits for the next one."""
    if committed_db.get_bind().dialect.name != "postgresql":
        pytest.skip("row locks that wait are PostgreSQL's")
    f = Factory(committed_db)
    q = f.queue(TaskKind.demonstration, overlap=1)
    first, second = f.task(q), f.task(q)
    taker, other = f.user(), f.user()
    committed_db.commit()
    holders = [session_factory()() for _ in range(3)]
    try:
        for h, t in zip(holders, (first, second), strict=False):
            h.execute(select(Task.id).where(Task.id == t.id).with_for_update())
        result: list[Any] = []

        def take() -> None:
            db = session_factory()()
            try:
                user = db.get(User, taker.id)
                assert user is not None
                a = service.next_task(db, user, q.id)
                result.append(a.task_id if a is not None else None)
                db.commit()
            except BaseException as exc:
                result.append(exc)
            finally:
                db.close()

        thread = threading.Thread(target=take)
        thread.start()
        _until_waiting(committed_db, 1)  # the taker waits for the first task
        # The first task's holder hands its only slot to another labeler and commits.
        later = utcnow() + timedelta(hours=1)
        holders[0].add(Assignment(task_id=first.id, user_id=other.id, lease_expires_at=later))
        holders[0].commit()
        _until_waiting(committed_db, 1)  # now it waits for the second task
        # The first task is free again: a third transaction locks it without waiting.
        holders[2].execute(text("SET LOCAL lock_timeout = '2s'"))
        holders[2].execute(select(Task.id).where(Task.id == first.id).with_for_update())
        holders[1].rollback()
        thread.join(timeout=30)
        assert result == [second.id]
    finally:
        for h in holders:
            h.rollback()
            h.close()


def _until_waiting(db: Any, n: int) -> None:
    """Wait until `n` backends of this database wait for a row lock (a tuple or transaction lock)."""
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        waiting = db.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ))
        db.rollback()
        if waiting == n:
            time.sleep(0.1)
            return
        time.sleep(0.05)
    raise AssertionError("no lease waited for a lock")
