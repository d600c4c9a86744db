"""Export batches: immutable, content-hashed snapshots that training reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ExportBatch(Base):
    """A directory under DATA_DIR/exports written once, with its filters, counts and hash."""

    __tablename__ = "export_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 over the files' contents and the filters: same data and filters, same hash.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(512))
    # {"queues": [...], "since", "until", "labelers": [...], "exclude_flags": [...], "splits": [...]}
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {"sft": n, "pairwise": n, "rankings": n, "prompts": n}
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    formats: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExportJob(Base):
    """Writing one export batch in the background: status and progress for the page that polls."""

    __tablename__ = "export_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("export_batches.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Stamped with each progress report: a running job silent past the stale limit may be re-claimed.
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
