"""Label items (tasks) and the leases (assignments) that hand their slots to labelers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow
from app.enums import AssignmentStatus, TaskKind, TaskStatus, sql_in


class Task(Base):
    """One item of a queue, to be labeled by `overlap` distinct labelers."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(TaskKind)})", name="kind_known"),
        CheckConstraint(f"status IN ({sql_in(TaskStatus)})", name="status_known"),
        CheckConstraint("overlap >= 1", name="overlap_positive"),
        CheckConstraint("done_count >= 0 AND done_count <= overlap", name="done_within_overlap"),
        # The lease query: open tasks of a queue, oldest first.
        Index("ix_tasks_queue_status_id", "queue_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("prompt_queues.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    # None for write-prompt tasks, which ask for a new prompt.
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(8), default=TaskStatus.open.value)
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    done_count: Mapped[int] = mapped_column(Integer, default=0)
    # For write-prompt tasks: "plain" | "few_shot" | "use_case" (InstructGPT's labeler prompts).
    hint: Mapped[str] = mapped_column(String(32), default="")
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    # Gold: {"ranks": {completion_id: tier}} for rankings, {"text": ...} for demonstrations.
    gold_answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Ranking tasks: how unsure the reward model `scored_by_id` is about the completions' order
    # (0 = sure, 1 = a coin flip; app/active); None until a reward model has scored it.
    uncertainty: Mapped[float | None] = mapped_column(Float)
    scored_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    assignments: Mapped[list[Assignment]] = relationship(back_populates="task")


class Assignment(Base):
    """A labeler's hold on one slot of a task: a lease until submitted, skipped or expired."""

    __tablename__ = "assignments"
    __table_args__ = (
        # Never the same item twice to one labeler, including after a skip.
        UniqueConstraint("task_id", "user_id", name="uq_assignments_task_user"),
        CheckConstraint(f"status IN ({sql_in(AssignmentStatus)})", name="status_known"),
        Index("ix_assignments_user_status", "user_id", "status"),
        Index("ix_assignments_task_status", "task_id", "status"),
        Index("ix_assignments_status_expires", "status", "lease_expires_at"),
        # Labels in the last hour / 24 h (queue progress): a range of recent labels, not all of them.
        Index("ix_assignments_status_finished", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12), default=AssignmentStatus.leased.value)
    leased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    guideline_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("guideline_versions.id", ondelete="SET NULL")
    )
    # Completion ids in the order this labeler was shown them (random per assignment).
    display_order: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Server-side autosave of a demonstration or prompt being written.
    draft_text: Mapped[str] = mapped_column(Text, default="")
    draft_saved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    skip_reason: Mapped[str] = mapped_column(Text, default="")
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)

    task: Mapped[Task] = relationship(back_populates="assignments")
