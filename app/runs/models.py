"""Training rounds: a run, its stages, metric series and log lines."""

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
from app.enums import RunStatus, StageStatus, sql_in
from app.runs.stages import DEFAULT_METHOD


class TrainingRun(Base):
    """One round: export batch in, its method's stages (app/runs/stages.py), evaluation, versions out."""

    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(RunStatus)})", name="status_known"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        Index("ix_training_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.queued.value)
    # The method (stage sequence) ops chose: a key of app.runs.stages.METHODS.
    method: Mapped[str] = mapped_column(String(32), default=DEFAULT_METHOD, server_default=DEFAULT_METHOD)
    export_batch_id: Mapped[int | None] = mapped_column(ForeignKey("export_batches.id", ondelete="SET NULL"))
    parent_policy_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    # Stage settings as edited by ops: {"stages": [...names, "evaluate"], "<stage>": {...}, ...}
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # app.runs.schemas.DeployGate as a dict: {"auto_deploy": true, "min_rm_gain": 0.0, "max_kl": 50.0, ...}
    deploy_gate: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    current_stage: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    error_stage: Mapped[str | None] = mapped_column(String(16))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(128))
    # Written by the worker while it is alive; a stale heartbeat marks the run failed.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resumed_from_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    stages: Mapped[list[RunStage]] = relationship(
        back_populates="run", order_by="RunStage.ordinal", cascade="all, delete-orphan"
    )


class RunStage(Base):
    """One stage of a run with its own status, progress, final metrics and output version.

    Stage names come from app/runs/stages.py (no CHECK: a new stage needs no migration).
    """

    __tablename__ = "run_stages"
    __table_args__ = (
        UniqueConstraint("run_id", "name", name="uq_run_stages_run_name"),
        CheckConstraint(f"status IN ({sql_in(StageStatus)})", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(16))
    ordinal: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default=StageStatus.pending.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    output_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    run: Mapped[TrainingRun] = relationship(back_populates="stages")


class RunMetric(Base):
    """One point of a metric series (loss, RM accuracy, reward, KL, response length)."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_stage_name_step", "run_id", "stage", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RunLog(Base):
    """A log line from a run's worker."""

    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    stage: Mapped[str | None] = mapped_column(String(16))
    line: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
