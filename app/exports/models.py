"""Export batches: immutable, content-hashed snapshots that training reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String
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
