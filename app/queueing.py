"""Enqueue Celery tasks only after the transaction that created their row has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("app.queueing")


def send(task_name: str, args: list[Any], queue: str) -> str | None:
    """Send a task by name; returns its id, or None when the broker is unreachable (logged)."""
    from app.worker import celery_app

    try:
        return str(celery_app.send_task(task_name, args=args, queue=queue).id)
    except Exception as exc:  # a broker outage must not fail the request that committed the row
        log.error("could not enqueue %s%s on %s: %s", task_name, tuple(args), queue, exc)
        return None


def enqueue_after_commit(
    db: Session, task_name: str, *args: Any, queue: str, on_sent: Callable[[str], None] | None = None
) -> None:
    """Send `task_name(*args)` to `queue` once `db` commits; nothing is sent if it rolls back.

    `on_sent(task_id)` runs only when the broker took the message.
    """

    def _after_commit(_session: Session) -> None:
        task_id = send(task_name, list(args), queue)
        if task_id is not None and on_sent is not None:
            on_sent(task_id)

    event.listen(db, "after_commit", _after_commit, once=True)
