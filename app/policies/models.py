"""The model registry: immutable policy and reward versions, and the deployment history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.enums import ModelKind, sql_in


class ModelVersion(Base):
    """A registered model directory with its lineage; at most one deployed policy."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(ModelKind)})", name="kind_known"),
        CheckConstraint("NOT is_deployed OR kind = 'policy'", name="only_policies_deploy"),
        # Exactly one deployed policy, enforced by the database on both backends.
        Index(
            "uq_model_versions_one_deployed",
            "is_deployed",
            unique=True,
            sqlite_where=text("is_deployed"),
            postgresql_where=text("is_deployed"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    # use_alter: model_versions and training_runs reference each other.
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL", use_alter=True)
    )
    export_batch_id: Mapped[int | None] = mapped_column(ForeignKey("export_batches.id", ondelete="SET NULL"))
    # The immutable directory holding the weights and manifest.json.
    path: Mapped[str] = mapped_column(String(512))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_deployed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Deployment(Base):
    """One deploy or rollback: which policy went live, which it replaced, who did it."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    previous_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(16))  # "deploy" | "rollback" | "auto"
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
