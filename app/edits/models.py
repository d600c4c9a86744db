"""A labeler's edit of the best completion of a ranking, stored beside the ranking."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class CompletionEdit(Base):
    """The best completion as the labeler rewrote it: an SFT row and a comparison (edit > original)."""

    __tablename__ = "completion_edits"

    id: Mapped[int] = mapped_column(primary_key=True)
    # One edit per ranking (a ranking is one per assignment).
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The completion that was edited (a tier-1 completion of the ranking).
    completion_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    guideline_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("guideline_versions.id", ondelete="SET NULL")
    )
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
