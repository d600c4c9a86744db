"""Training rounds: start, cancel, resume, approve; stage bookkeeping; stale-worker detection.

What the run pages read (lists, metric series, log tail, ETA) is in app/runs/pages.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.enums import ModelKind, RunStatus, StageStatus
from app.errors import AppError, Conflict, NotFound
from app.policies import service as registry
from app.policies.models import ModelVersion
from app.queueing import enqueue
from app.runs import stages
from app.runs.gate import gate_decision
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


def _latest_reward_model(db: Session) -> int | None:
    return db.scalar(
        select(ModelVersion.id)
        .where(ModelVersion.kind == ModelKind.reward.value)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    )


def _reward_models(db: Session, req: RoundRequest) -> tuple[int | None, int | None]:
    """The reward model the stages use, and the one the evaluation scores with.

    A stage that needs a reward model which no earlier stage of the round trains gets the chosen
    one, else the latest registered. The evaluation prefers a reward model the round trains; else
    it uses the stages' one, else the latest registered (so an InstructGPT round's RM scores a DPO
    policy), else none: the world oracle and KL still judge.
    """
    reward_id = req.reward_model_id
    if reward_id is None and stages.needs_reward_model(req.stages):
        reward_id = _latest_reward_model(db)
        if reward_id is None:
            first = next(s for s in req.stages if stages.get(s).reward_required)
            raise AppError(
                f"{stages.label(first)} without an RM stage needs a trained reward model; "
                "none is registered yet."
            )
    return reward_id, reward_id if reward_id is not None else _latest_reward_model(db)


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
    reward_id, eval_reward_id = _reward_models(db, req)
    batch = create_export_batch(
        db,
        ExportFilters(queues=req.queue_ids, since=req.since, until=req.until, splits=req.splits),
        created_by=by,
    )
    names = [*req.stages, stages.EVALUATE]
    run = TrainingRun(
        status=RunStatus.queued.value,
        method=req.method,
        export_batch_id=batch.id,
        parent_policy_id=parent.id,
        config={
            "stages": names,
            "preset": req.preset,
            "reward_model_id": reward_id,
            "eval_reward_model_id": eval_reward_id,
            **req.stage_settings(),
        },
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
    """The last deployable policy a round's stages produced (PPO's or DPO's, else SFT's)."""
    for stage in reversed(run.stages):
        if stages.is_deployable(stage.name) and stage.output_version_id:
            return stage.output_version_id
    return None


def _stage(run: TrainingRun, name: str) -> RunStage:
    stage = next((s for s in run.stages if s.name == name), None)
    if stage is None:
        raise NotFound(f"Round {run.id} has no stage {name}.")
    return stage


def claim_run(db: Session, run_id: int, worker: str) -> TrainingRun | None:
    """Mark a queued run running on `worker`; None (and nothing changed) when it is not queued.

    A redelivered message for a run that already started does nothing; a run whose export batch
    or parent policy has gone is failed here.
    """
    from app.exports.models import ExportBatch

    run = get_run(db, run_id, lock=True)
    if run.status != RunStatus.queued.value:
        return None
    batch = db.get(ExportBatch, run.export_batch_id) if run.export_batch_id else None
    parent = db.get(ModelVersion, run.parent_policy_id) if run.parent_policy_id else None
    if batch is None or parent is None:
        fail_run(db, run, "the round's export batch or parent policy is missing", None)
        return None
    now = utcnow()
    run.status, run.heartbeat_at, run.cancel_requested = RunStatus.running.value, now, False
    run.started_at = run.started_at or now
    run.worker = worker
    add_log(db, run.id, None, f"started on {worker}")
    db.flush()
    return run


def start_stage(db: Session, run_id: int, name: str) -> None:
    """Mark a stage running and current."""
    run = get_run(db, run_id)
    run.current_stage = name
    stage = _stage(run, name)
    stage.status = StageStatus.running.value
    stage.started_at = stage.started_at or utcnow()
    db.flush()


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}


def finish_stage(
    db: Session, run_id: int, name: str, *, kind: ModelKind, path: str | Path, parent_id: int | None
) -> ModelVersion:
    """Register a stage's model directory and mark the stage succeeded, in one transaction."""
    run = get_run(db, run_id)
    version = registry.register_version(
        db,
        name=f"{kind.value}-r{run_id}-{name}",
        kind=kind,
        path=path,
        parent_id=parent_id,
        run_id=run_id,
        export_batch_id=run.export_batch_id,
        lineage={"run": run_id, "method": run.method, "stage": name},
    )
    stage = _stage(run, name)
    stage.status, stage.progress, stage.finished_at = StageStatus.succeeded.value, 1.0, utcnow()
    stage.output_version_id, stage.metrics = version.id, _scalars(version.metrics or {})
    add_log(db, run.id, name, f"registered {version.name}")
    db.flush()
    return version


def finish_evaluation(db: Session, run_id: int, name: str, metrics: dict[str, Any]) -> None:
    """Mark the evaluation succeeded with its metrics."""
    stage = _stage(get_run(db, run_id), name)
    stage.status, stage.progress, stage.finished_at = StageStatus.succeeded.value, 1.0, utcnow()
    stage.metrics = metrics
    db.flush()


def record_progress(
    db: Session,
    run_id: int,
    stage: str,
    *,
    step: int,
    total: int,
    run_progress: float,
    points: list[tuple[int, dict[str, Any]]],
    logs: list[str],
) -> None:
    """A stage's buffered metric points and log lines, its step, and the run's progress and heartbeat."""
    for at, metrics in points:
        add_metrics(db, run_id, stage, at, metrics)
    for line in logs:
        add_log(db, run_id, stage, line)
    fraction = min(1.0, step / total) if total else 0.0
    db.execute(
        update(RunStage)
        .where(RunStage.run_id == run_id, RunStage.name == stage)
        .values(progress=fraction, step=step, total_steps=total)
    )
    db.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id)
        .values(progress=min(1.0, max(0.0, run_progress)), heartbeat_at=utcnow())
    )


def beat(db: Session, run_id: int) -> None:
    """Stamp the run's heartbeat (its worker is alive)."""
    db.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(heartbeat_at=utcnow()))


def cancel_requested(db: Session, run_id: int) -> bool:
    """Whether ops asked the running round to stop."""
    return bool(db.scalar(select(TrainingRun.cancel_requested).where(TrainingRun.id == run_id)))


def mark_cancelled(db: Session, run_id: int, stage: str | None) -> None:
    """The worker stopped a round at ops' request: the run and its running stage are cancelled."""
    run = get_run(db, run_id, lock=True)
    _finish(run, RunStatus.cancelled, error=None)
    run.current_stage = None
    for s in run.stages:
        if s.status == StageStatus.running.value:
            s.status = StageStatus.cancelled.value
    add_log(db, run_id, stage, "cancelled by ops")
    db.flush()


def conclude_run(db: Session, run_id: int, metrics: dict[str, Any]) -> TrainingRun:
    """After the last stage: deploy through the gate, or wait for an approval with the gate's reasons."""
    run = get_run(db, run_id, lock=True)
    run.current_stage = None
    policy_id = final_policy_id(run)
    ok, reasons = gate_decision(run.deploy_gate or {}, metrics)
    if policy_id is None:
        _finish(run, RunStatus.succeeded, error=None)
    elif ok:
        registry.deploy(db, policy_id, action="auto", run_id=run.id)
        _finish(run, RunStatus.succeeded, error=None)
        add_log(db, run.id, None, "deploy gate passed: deployed")
    else:
        _finish(run, RunStatus.awaiting_approval, error=None)
        add_log(db, run.id, None, "waiting for ops approval: " + "; ".join(reasons))
    run.progress = 1.0
    db.flush()
    return run


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
