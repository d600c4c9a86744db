"""Tasks that prove the queue works, and the worker heartbeats behind the ops console's worker list."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from sqlalchemy import delete, select

from app.db import session_scope, utcnow
from app.queueing import relay
from app.system.models import WorkerHeartbeat
from app.worker import celery_app

log = logging.getLogger("app.system")
BEAT_EVERY_S = 15.0
_stop = threading.Event()


@celery_app.task(name="system.ping")
def ping(payload: str) -> dict[str, str | int]:
    """Echo a payload with the worker's host and pid (a round trip through broker and backend)."""
    return {"payload": payload, "host": socket.gethostname(), "pid": os.getpid()}


def _node(sender: Any) -> str:
    return str(getattr(sender, "hostname", None) or f"celery@{socket.gethostname()}")


def _beat(node: str, queues: list[str] | None = None, doing: dict[str, Any] | None = None) -> None:
    with session_scope() as db:
        row = db.scalar(select(WorkerHeartbeat).where(WorkerHeartbeat.node == node))
        if row is None:
            row = WorkerHeartbeat(node=node, pid=os.getpid(), queues=queues or [], doing={})
            db.add(row)
        row.last_seen = utcnow()
        if queues is not None:
            row.queues, row.pid, row.started_at = queues, os.getpid(), utcnow()
        if doing is not None:
            row.doing = doing


@celery_app.task(name="system.relay_outbox")
def relay_outbox() -> int:
    """Send outbox messages the broker has not accepted yet (beat, every OUTBOX_RELAY_EVERY_S)."""
    return relay()


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    node = _node(sender)
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else []
    try:
        _beat(node, queues=queues, doing={})
    except Exception:
        log.exception("could not record worker %s", node)
    try:
        relay()  # what was committed while no broker or worker was up goes out now
    except Exception:
        log.exception("could not relay the outbox at worker start")

    def loop() -> None:
        while not _stop.wait(BEAT_EVERY_S):
            try:
                _beat(node)
            except Exception:  # noqa: S112 - the database may be restarting; beat again later
                continue

    threading.Thread(target=loop, name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(sender: Any = None, **_: Any) -> None:
    _stop.set()
    try:
        with session_scope() as db:
            db.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.node == _node(sender)))
    except Exception:
        log.exception("could not remove worker heartbeat")


def _task_node(task: Any) -> str:
    return str(getattr(task.request, "hostname", None) or f"celery@{socket.gethostname()}")


@task_prerun.connect
def _on_task_start(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    if task is None or task.name.startswith("system."):
        return
    try:
        _beat(
            _task_node(task),
            doing={"task": task.name, "args": list(args or [])[:3], "since": utcnow().isoformat()},
        )
    except Exception:
        log.exception("could not record task start")


@task_postrun.connect
def _on_task_end(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is None or task.name.startswith("system."):
        return
    try:
        _beat(_task_node(task), doing={})
    except Exception:
        log.exception("could not record task end")
