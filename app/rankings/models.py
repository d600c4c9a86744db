"""Sampled completions and the rankings labelers make of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow
from app.enums import LIKERT_MAX, LIKERT_MIN


class Completion(Base):
    """One sampled answer to a prompt, with the policy version and parameters that made it."""

    __tablename__ = "completions"
    __table_args__ = (UniqueConstraint("task_id", "position", name="uq_completions_task_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    # Position within its task (0..K-1), the canonical order; display order is per assignment.
    position: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text)
    policy_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True
    )
    # {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 64, "seed": ..., "source": "sampler"}
    sampling_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    finished: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Ranking(Base):
    """One labeler's ordering of a task's K completions into tiers (ties allowed)."""

    __tablename__ = "rankings"
    # A labeler's latest rankings (the quality page's time per task), newest first.
    __table_args__ = (Index("ix_rankings_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # One ranking per assignment: a double submit stores one.
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    guideline_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("guideline_versions.id", ondelete="SET NULL")
    )
    # Completion ids in the order they were shown.
    display_order: Mapped[list[int]] = mapped_column(JSON, default=list)
    all_unacceptable: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    entries: Mapped[list[RankingEntry]] = relationship(
        back_populates="ranking", cascade="all, delete-orphan", order_by="RankingEntry.tier"
    )


class RankingEntry(Base):
    """One completion's place in a ranking: its tier (1 = best), Likert rating and flags."""

    __tablename__ = "ranking_entries"
    __table_args__ = (
        UniqueConstraint("ranking_id", "completion_id", name="uq_ranking_entries_ranking_completion"),
        CheckConstraint("tier >= 1", name="tier_positive"),
        CheckConstraint(
            f"likert IS NULL OR (likert >= {LIKERT_MIN} AND likert <= {LIKERT_MAX})", name="likert_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    completion_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"), index=True)
    tier: Mapped[int] = mapped_column(Integer)
    likert: Mapped[int | None] = mapped_column(Integer)
    # Keys of app.enums.FLAGS.
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")

    ranking: Mapped[Ranking] = relationship(back_populates="entries")
