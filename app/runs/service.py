"""Training rounds: start, cancel, resume, approve; stage bookkeeping; stale-worker detection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.enums import ModelKind, RunStatus, StageName, StageStatus
from app.errors import AppError, Conflict, NotFound
from app.policies import service as registry
from app.policies.models import ModelVersion
from app.queueing import enqueue
from app.runs.models import RunLog, RunMetric, RunStage, TrainingRun
from app.runs.schemas import RoundRequest

LIVE = (RunStatus.queued.value, RunStatus.running.value)
TERMINAL = (RunStatus.succeeded.value, RunStatus.failed.value, RunStatus.cancelled.value)
RUN_TASK = "runs.run_round"


def get_run(db: Session, run_id: int, *, lock: bool = False) -> TrainingRun:
    """A run by id (optionally locked for update), or NotFound."""
    q = select(TrainingRun).where(TrainingRun.id == run_id)
    run = db.scalar(q.with_for_update() if lock else q)
    if run is None:
        raise NotFound("No such training round.")
    return run


def _reward_model_for(db: Session, req: RoundRequest) -> int | None:
    if StageName.reward in req.stages or StageName.ppo not in req.stages:
        return req.reward_model_id
    if req.reward_model_id is not None:
        return req.reward_model_id
    latest = db.scalar(
        select(ModelVersion.id)
        .where(ModelVersion.kind == ModelKind.reward.value)
        .order_by(ModelVersion.id.desc())
    )
    if latest is None:
        raise AppError("PPO without an RM stage needs a trained reward model; none is registered yet.")
    return latest


def start_round(db: Session, req: RoundRequest, by: User | None) -> TrainingRun:
    """Write the export batch, record the run and its stages, and enqueue it after commit."""
    from app.exports.service import ExportFilters, create_export_batch

    parent = (
        registry.get_version(db, req.parent_policy_id)
        if req.parent_policy_id is not None
        else registry.deployed_policy(db)
    )
    if parent is None or parent.kind != ModelKind.policy.value:
        raise AppError("Choose a parent policy: none is deployed yet.")
    reward_id = _reward_model_for(db, req)
    batch = create_export_batch(
        db,
        ExportFilters(queues=req.queue_ids, since=req.since, until=req.until, splits=req.splits),
        created_by=by,
    )
    names = [s.value for s in req.stages] + [StageName.evaluate.value]
    run = TrainingRun(
        status=RunStatus.queued.value,
        export_batch_id=batch.id,
        parent_policy_id=parent.id,
        config={"stages": names, "preset": req.preset, "reward_model_id": reward_id, **req.stage_settings()},
        deploy_gate=req.gate.model_dump(),
        created_by_id=by.id if by else None,
    )
    run.stages = [RunStage(name=n, ordinal=i) for i, n in enumerate(names)]
    db.add(run)
    db.flush()
    enqueue(db, RUN_TASK, run.id, queue="training")
    return run


def cancel_run(db: Session, run_id: int) -> TrainingRun:
    """Ask the worker to stop at its next step; a queued run is cancelled at once."""
    run = get_run(db, run_id, lock=True)
    if run.status == RunStatus.queued.value:
        _finish(run, RunStatus.cancelled, error=None)
    elif run.status == RunStatus.running.value:
        run.cancel_requested = True
    elif run.status == RunStatus.awaiting_approval.value:
        _finish(run, RunStatus.cancelled, error=None)
    else:
        raise Conflict(f"Round {run.id} has already ended ({run.status}).")
    db.flush()
    return run


def resume_run(db: Session, run_id: int) -> TrainingRun:
    """Requeue a failed or cancelled round; stages that succeeded are kept, the rest run again."""
    run = get_run(db, run_id, lock=True)
    if run.status not in (RunStatus.failed.value, RunStatus.cancelled.value, RunStatus.queued.value):
        raise Conflict(f"Only failed, cancelled or stuck queued rounds can be resumed, not {run.status}.")
    for stage in run.stages:
        if stage.status != StageStatus.succeeded.value:
            stage.status, stage.progress, stage.error = StageStatus.pending.value, 0.0, None
    run.status, run.error, run.error_stage = RunStatus.queued.value, None, None
    run.cancel_requested, run.finished_at = False, None
    add_log(db, run.id, None, "resumed by ops; completed stages are kept")
    db.flush()
    enqueue(db, RUN_TASK, run.id, queue="training")
    return run


def approve_run(db: Session, run_id: int, by: User) -> TrainingRun:
    """Deploy the policy of a round that waits at its deploy gate."""
    run = get_run(db, run_id, lock=True)
    if run.status != RunStatus.awaiting_approval.value:
        raise Conflict(f"Round {run.id} is not waiting for approval ({run.status}).")
    policy_id = final_policy_id(run)
    if policy_id is None:
        raise Conflict("This round produced no policy to deploy.")
    registry.deploy(db, policy_id, by=by, action="deploy", run_id=run.id)
    _finish(run, RunStatus.succeeded, error=None)
    add_log(db, run.id, None, f"deployed by {by.username}")
    db.flush()
    return run


def final_policy_id(run: TrainingRun) -> int | None:
    """The last policy a round's stages produced (PPO's, else SFT's)."""
    for stage in reversed(run.stages):
        if stage.name in (StageName.ppo.value, StageName.sft.value) and stage.output_version_id:
            return stage.output_version_id
    return None


def reap_stale_runs(db: Session, now: datetime | None = None, stale_after_s: int | None = None) -> list[int]:
    """Mark running rounds whose worker stopped sending heartbeats as failed, with the stage they died in."""
    from app.config import get_settings

    stale_after_s = stale_after_s if stale_after_s is not None else get_settings().run_stale_after_s
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    stale = list(
        db.scalars(
            select(TrainingRun)
            .where(TrainingRun.status == RunStatus.running.value, TrainingRun.heartbeat_at < cutoff)
            .with_for_update(skip_locked=True)
        )
    )
    for run in stale:
        stage = run.current_stage
        message = (
            f"the worker stopped responding (no heartbeat for {stale_after_s} s) during {stage or 'start-up'}"
        )
        fail_run(db, run, message, stage)
    db.flush()
    return [r.id for r in stale]


def _finish(run: TrainingRun, status: RunStatus, error: str | None) -> None:
    run.status = status.value
    run.finished_at = utcnow()
    if error is not None:
        run.error = error[:4000]


def fail_run(db: Session, run: TrainingRun, error: str, stage: str | None) -> None:
    """Record a failure on the run and on the stage it happened in."""
    _finish(run, RunStatus.failed, error)
    run.error_stage = stage
    for s in run.stages:
        if s.name == stage and s.status == StageStatus.running.value:
            s.status, s.error, s.finished_at = StageStatus.failed.value, error[:4000], utcnow()
    add_log(db, run.id, stage, f"failed: {error}")


def add_log(db: Session, run_id: int, stage: str | None, line: str) -> None:
    """Append a log line to a run."""
    db.add(RunLog(run_id=run_id, stage=stage, line=line[:2000]))


def add_metrics(db: Session, run_id: int, stage: str, step: int, metrics: dict[str, Any]) -> None:
    """Append one point per numeric metric."""
    for name, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:  # skip NaN
            db.add(RunMetric(run_id=run_id, stage=stage, name=name[:64], step=step, value=float(value)))


def list_runs(db: Session, limit: int = 50) -> list[TrainingRun]:
    """Recent rounds, newest first."""
    return list(db.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Series:
    """One metric of one stage over steps."""

    stage: str
    name: str
    points: list[tuple[int, float]]


def metric_series(db: Session, run_id: int) -> list[Series]:
    """Every metric series of a run, grouped by stage and name, in step order."""
    rows = db.execute(
        select(RunMetric.stage, RunMetric.name, RunMetric.step, RunMetric.value)
        .where(RunMetric.run_id == run_id)
        .order_by(RunMetric.stage, RunMetric.name, RunMetric.step)
    ).all()
    grouped: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for stage, name, step, value in rows:
        grouped.setdefault((stage, name), []).append((step, value))
    return [Series(stage, name, pts) for (stage, name), pts in grouped.items()]


def log_tail(db: Session, run_id: int, n: int = 30) -> list[RunLog]:
    """The last n log lines, oldest first."""
    rows = list(db.scalars(select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.id.desc()).limit(n)))
    return rows[::-1]


def eta_seconds(run: TrainingRun, now: datetime | None = None) -> float | None:
    """Remaining seconds at the current pace (None before there is any progress)."""
    if run.status != RunStatus.running.value or not run.started_at or run.progress <= 0.01:
        return None
    started = (
        run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=(now or utcnow()).tzinfo)
    )
    elapsed = ((now or utcnow()) - started).total_seconds()
    return max(0.0, elapsed * (1 - run.progress) / run.progress)


def mark_queued_runs_failed_to_enqueue(db: Session, older_than_s: int = 600) -> int:
    """Rounds that never reached a worker (broker down at enqueue time) are marked failed, resumable."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    result = db.execute(
        update(TrainingRun)
        .where(
            TrainingRun.status == RunStatus.queued.value,
            TrainingRun.started_at.is_(None),
            TrainingRun.created_at < cutoff,
        )
        .values(
            status=RunStatus.failed.value,
            error="no worker picked this round up; resume it to retry",
            finished_at=utcnow(),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
