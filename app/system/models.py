"""Worker processes report here: who is up, which queues, what each is doing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class WorkerHeartbeat(Base):
    """One Celery worker (by node name), refreshed while it lives."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(255), unique=True)
    pid: Mapped[int] = mapped_column(Integer, default=0)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    # {"task": "runs.run_round", "run_id": 3, "since": "..."} or {} when idle
    doing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxMessage(Base):
    """A task to send, written in the same transaction as the row it is about (transactional outbox).

    The relay sends it after that commit, again from a scheduled task and at worker start, until
    the broker accepts it; `sent_at` marks it done. Tasks are idempotent on their row's status, so
    a message sent twice (a relay that died between send and mark) runs once.
    """

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_name: Mapped[str] = mapped_column(String(128))
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    queue: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(500), default="")
