"""Demonstrations: the labeler-written answers that SFT learns from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Demonstration(Base):
    """A submitted answer to a prompt, traceable to its labeler, time and guideline version."""

    __tablename__ = "demonstrations"
    # A labeler's latest demonstrations (the quality page's time per task), newest first.
    __table_args__ = (Index("ix_demonstrations_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # One label per assignment: a double submit cannot store two.
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    guideline_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("guideline_versions.id", ondelete="SET NULL")
    )
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
