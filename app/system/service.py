"""Worker status for the ops console: which workers are up, what each does, how long the queues are."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.system.models import WorkerHeartbeat
from app.worker import QUEUES

log = logging.getLogger("app.system")
# Workers beat every 15 s; four missed beats and the worker is shown as down.
UP_WITHIN_S = 60


def broker_folder(settings: Settings) -> str:
    """The filesystem broker's message folder (the embedded default, no REDIS_URL)."""
    return str((settings.data_dir / "celery" / "broker").resolve())


def _count_folder(folder: str, queue: str) -> int:
    # kombu's filesystem transport names a message "<ms>_<uuid>.<queue>.msg" and matches on
    # everything after the first dot, so count exactly the way its _size() does.
    wanted = f"{queue}.msg"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    return sum(1 for name in names if name.partition(".")[2] == wanted)


def _redis_lengths(url: str, queues: tuple[str, ...]) -> dict[str, int | None]:
    import redis

    client: Any = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return {q: int(client.llen(q)) for q in queues}
    finally:
        client.close()


def queue_lengths(settings: Settings, queues: tuple[str, ...] = QUEUES) -> dict[str, int | None]:
    """Messages waiting per Celery queue; None where the broker cannot be asked."""
    if settings.redis_url:
        try:
            return _redis_lengths(settings.redis_url, queues)
        except Exception as exc:  # the console must render while Redis is down
            log.warning("cannot read queue lengths from Redis: %s", exc)
            return {q: None for q in queues}
    folder = broker_folder(settings)
    try:
        return {q: _count_folder(folder, q) for q in queues}
    except OSError as exc:
        log.warning("cannot read the broker folder %s: %s", folder, exc)
        return {q: None for q in queues}


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as the console shows it."""

    node: str
    pid: int
    queues: list[str]
    doing: dict[str, Any]
    last_seen: datetime
    up: bool


def _aware(at: datetime, now: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=now.tzinfo)


def workers(db: Session, now: datetime | None = None) -> list[WorkerStatus]:
    """Every worker that has sent a heartbeat, up when its last one is at most 60 s old."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=UP_WITHIN_S)
    rows = db.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.node))
    return [
        WorkerStatus(
            node=row.node,
            pid=row.pid,
            queues=list(row.queues or []),
            doing=dict(row.doing or {}),
            last_seen=row.last_seen,
            up=_aware(row.last_seen, now) >= cutoff,
        )
        for row in rows
    ]
