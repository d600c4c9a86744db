"""Enqueue Celery tasks only after the transaction that created their row has committed.

Two ways: `enqueue` writes an outbox row in the caller's transaction, relayed after the commit
and again (by beat and at worker start) until the broker takes it, so no enqueue is ever lost;
`enqueue_after_commit` is best effort, for advisory requests that a scheduled task repeats anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.db import session_scope, utcnow

log = logging.getLogger("app.queueing")
RELAY_TASK = "system.relay_outbox"
RELAY_BATCH = 100


def send(task_name: str, args: list[Any], queue: str, task_id: str | None = None) -> str | None:
    """Send a task by name; returns its id, or None when the broker is unreachable (logged)."""
    from app.worker import celery_app

    try:
        # No result is awaited: without ignore_result a Redis result backend is contacted first,
        # which retries for about 20 s while Redis is down (the request would hang that long).
        result = celery_app.send_task(task_name, args=args, queue=queue, task_id=task_id, ignore_result=True)
        return str(result.id)
    except Exception as exc:  # a broker outage must not fail the request that committed the row
        log.error("could not enqueue %s%s on %s: %s", task_name, tuple(args), queue, exc)
        return None


def enqueue_after_commit(
    db: Session, task_name: str, *args: Any, queue: str, on_sent: Callable[[str], None] | None = None
) -> None:
    """Send `task_name(*args)` to `queue` once `db` commits; nothing is sent if it rolls back.

    Best effort: lost when the broker is down. `on_sent(task_id)` runs only when the broker took it.
    """

    def _after_commit(_session: Session) -> None:
        task_id = send(task_name, list(args), queue)
        if task_id is not None and on_sent is not None:
            on_sent(task_id)

    event.listen(db, "after_commit", _after_commit, once=True)


OUTBOX_KEY = "outbox_ids"


def enqueue(db: Session, task_name: str, *args: Any, queue: str) -> int:
    """Record `task_name(*args)` for `queue` in `db`'s transaction; relayed once it commits.

    The commit edges (the request's session, session_scope) call relay_committed; returns the
    outbox row id. Nothing is sent when the transaction rolls back.
    """
    from app.system.models import OutboxMessage

    message = OutboxMessage(task_name=task_name, args=list(args), queue=queue)
    db.add(message)
    db.flush()
    db.info.setdefault(OUTBOX_KEY, []).append(message.id)
    return message.id


def relay_committed(db: Session) -> None:
    """After `db` committed: send the messages it recorded (in a short transaction of its own).

    Best effort: a broker outage leaves them for the scheduled relay; the request still succeeds.
    """
    ids = db.info.pop(OUTBOX_KEY, None)
    if not ids:
        return
    try:
        _relay(db, ids)
        db.commit()
    except Exception:
        db.rollback()
        log.exception("outbox relay after commit failed; the scheduled relay will retry")


def relay(ids: Sequence[int] | None = None) -> int:
    """Send unsent outbox messages (those in `ids`, or all) in a transaction of their own."""
    with session_scope() as db:
        return _relay(db, ids)


def _relay(db: Session, ids: Sequence[int] | None) -> int:
    """Send and mark unsent messages. Rows are locked while sent (skipped when another relay holds
    them, on PostgreSQL), so two relays do not both send one message. Returns how many were sent."""
    from app.system.models import OutboxMessage

    q = select(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id)
    if ids is not None:
        q = q.where(OutboxMessage.id.in_(list(ids)))
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    sent = 0
    for message in db.scalars(q.limit(RELAY_BATCH)):
        message.attempts += 1
        # The outbox id as the task id: a resend after a crash is recognisable in logs.
        if send(message.task_name, list(message.args), message.queue, f"outbox-{message.id}") is None:
            message.last_error = "the broker did not accept the message"
            break  # the broker is down: the rest would fail too
        message.sent_at = utcnow()
        sent += 1
    db.flush()
    return sent


def pending(db: Session) -> int:
    """Outbox messages the broker has not accepted yet."""
    from app.system.models import OutboxMessage

    return int(db.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0)
