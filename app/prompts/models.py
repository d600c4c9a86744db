"""Prompt queues with versioned guidelines, prompts, imports and personal-data redactions."""

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
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow
from app.enums import K_MAX, K_MIN, PIIStatus, Split, TaskKind, sql_in


class PromptQueue(Base):
    """A stream of work of one kind, with K, overlap, priority and guidelines."""

    __tablename__ = "prompt_queues"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(TaskKind)})", name="kind_known"),
        CheckConstraint(f"k >= {K_MIN} AND k <= {K_MAX}", name="k_range"),
        CheckConstraint("overlap >= 1", name="overlap_positive"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    # K completions per ranking task; stored for every kind so a queue can change kind safely.
    k: Mapped[int] = mapped_column(Integer, default=4)
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Sampling keeps ranking queues above this many open tasks.
    low_water: Mapped[int] = mapped_column(Integer, default=20)
    # {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 64, "mix": "deployed" | "deployed+parent"}
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    # Ranking queues: labelers may edit the best completion (an SFT row and an edited-vs-original pair).
    allow_edits: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_text("false"))
    # Lease order of ranking tasks: "oldest" first, or the reward model's "uncertainty" (app/active).
    task_order: Mapped[str] = mapped_column(String(16), default="oldest", server_default="oldest")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    guidelines: Mapped[list[GuidelineVersion]] = relationship(
        back_populates="queue", order_by="GuidelineVersion.version", cascade="all, delete-orphan"
    )


class GuidelineVersion(Base):
    """One immutable version of a queue's markdown guidelines; labels record which they saw."""

    __tablename__ = "guideline_versions"
    __table_args__ = (UniqueConstraint("queue_id", "version", name="uq_guideline_versions_queue_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("prompt_queues.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    body_md: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    queue: Mapped[PromptQueue] = relationship(back_populates="guidelines")


class Prompt(Base):
    """A prompt: imported, ingested through the API, or written by a labeler."""

    __tablename__ = "prompts"
    __table_args__ = (
        CheckConstraint(f"split IN ({sql_in(Split)})", name="split_known"),
        CheckConstraint(f"pii_status IN ({sql_in(PIIStatus)})", name="pii_status_known"),
        Index("ix_prompts_queue_pii", "queue_id", "pii_status"),
        Index("ix_prompts_external_user", "external_user_id"),
        # One stored prompt per dedup key: concurrent imports cannot store a duplicate (ON CONFLICT).
        # Prompts that are not imported (labeler-written) carry an empty key.
        Index("uq_prompts_dedup_key", "dedup_key", unique=True,
              postgresql_where=sql_text("dedup_key <> ''"), sqlite_where=sql_text("dedup_key <> ''")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_queues.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    # A conversation ([{"role", "content"}, ...] ending with the user's turn) or NULL for a plain
    # prompt; `text` then holds its transcript (app.prompts.conversation), so plain-text readers
    # see the whole conversation and personal-data spans are positions in it.
    messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSON(none_as_null=True))
    # "import", "api", "labeler", "world" (the simulated world), ...
    source: Mapped[str] = mapped_column(String(32), default="import")
    external_user_id: Mapped[str | None] = mapped_column(String(128))
    split: Mapped[str] = mapped_column(String(8), default=Split.train.value)
    pii_status: Mapped[str] = mapped_column(String(16), default=PIIStatus.unchecked.value)
    pii_findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Normalised long prefix: prompts sharing it are duplicates (instructgpt.md, prompt data).
    dedup_key: Mapped[str] = mapped_column(String(64), default="")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_imports.id", ondelete="SET NULL"))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PromptImport(Base):
    """One import of a file or an API call: what was taken and what was rejected, by line."""

    __tablename__ = "prompt_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("prompt_queues.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(256), default="")
    # "valid_rows": take the valid rows and list the rejects; "all_or_nothing": any reject aborts.
    mode: Mapped[str] = mapped_column(String(16), default="valid_rows")
    status: Mapped[str] = mapped_column(String(16), default="done")
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    capped: Mapped[int] = mapped_column(Integer, default=0)
    held_for_pii: Mapped[int] = mapped_column(Integer, default=0)
    # [{"line": 12, "reason": "..."}], capped in length by the service
    report: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PIIRedaction(Base):
    """An admin's decision on a held prompt: the spans redacted (by kind), or a rejection."""

    __tablename__ = "pii_redactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(16))  # "redact" | "reject" | "clear"
    # [{"kind": "email", "start": 10, "end": 27}] — positions in the text before redaction
    spans: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
