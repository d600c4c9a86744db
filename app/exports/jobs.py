"""Export batches written by a worker: the console records a job and returns at once.

The job row and its outbox message commit together (app/queueing.py), so a job is never lost
to a broker outage. The worker reads on one snapshot without holding any lock (app.db.read_scope),
reports progress in short transactions, then records the batch and the job's end in one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import read_scope, session_scope, utcnow
from app.errors import NotFound
from app.exports import service
from app.exports.models import ExportJob
from app.exports.schemas import ExportFilters, parse_filters
from app.queueing import enqueue

log = logging.getLogger("app.exports")
EXPORT_TASK = "exports.write_batch"
LIVE = ("queued", "running")
# A running job that reported nothing for this long lost its worker; a redelivery may take it.
STALE_AFTER = timedelta(minutes=10)


def start_export(db: Session, filters: ExportFilters, by: User | None) -> ExportJob:
    """Record an export job and its message to the worker (sent once the caller commits)."""
    job = ExportJob(filters=filters.canonical(), created_by_id=by.id if by else None)
    db.add(job)
    db.flush()
    enqueue(db, EXPORT_TASK, job.id, queue="default")
    return job


def get_job(db: Session, job_id: int) -> ExportJob:
    """One export job, or NotFound."""
    job = db.get(ExportJob, job_id)
    if job is None:
        raise NotFound("There is no such export job.")
    return job


def live_jobs(db: Session) -> list[ExportJob]:
    """Jobs still queued or running, oldest first (shown above the batches)."""
    return list(db.scalars(select(ExportJob).where(ExportJob.status.in_(LIVE)).order_by(ExportJob.id)))


def _claim(job_id: int) -> ExportJob | None:
    """Mark the job running; None when it is done or another worker is on it (a duplicate message)."""
    with session_scope() as db:
        job = db.scalar(select(ExportJob).where(ExportJob.id == job_id).with_for_update())
        if job is None or job.status not in LIVE:
            return None
        if job.status == "running" and _aware(job.updated_at) > utcnow() - STALE_AFTER:
            return None
        job.status, job.progress, job.updated_at = "running", 0.0, utcnow()
        return job


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _report(job_id: int, fraction: float) -> None:
    with session_scope() as db:
        db.execute(update(ExportJob).where(ExportJob.id == job_id)
                   .values(progress=fraction, updated_at=utcnow()))


def run_export(job_id: int) -> int | None:
    """Write the job's batch (worker side); returns the batch id, or None when there was nothing to do."""
    job = _claim(job_id)
    if job is None:
        return None
    try:
        filters = parse_filters(job.filters)
        with read_scope() as reader:
            staged = service.stage_batch(reader, filters, progress=lambda f: _report(job_id, f))
        with session_scope() as db:
            by = db.get(User, job.created_by_id) if job.created_by_id else None
            batch = service.record_batch(db, staged, by)
            done = db.get(ExportJob, job_id)
            assert done is not None
            done.status, done.progress, done.batch_id = "succeeded", 1.0, batch.id
            done.finished_at = done.updated_at = utcnow()
            return batch.id
    except Exception as exc:
        log.exception("export job %s failed", job_id)
        with session_scope() as db:
            db.execute(update(ExportJob).where(ExportJob.id == job_id).values(
                status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=utcnow()))
        raise
