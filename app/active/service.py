"""Which ranking tasks to score with which reward model, storing the scores, and showing the order.

Queues with `task_order = "uncertainty"` lease their open ranking tasks most uncertain first
(app.labeling.service.next_task). The sampling worker scores (app/active/tasks.py): new tasks
right after it stocks the queue, and every open task again when a new reward model is
registered. Nothing here imports torch; scoring itself is training.active in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from app.enums import ModelKind, TaskKind, TaskStatus
from app.labeling.models import Task
from app.policies.models import ModelVersion
from app.prompts.models import Prompt, PromptQueue
from app.rankings.models import Completion

UNCERTAINTY = "uncertainty"
TASK_ORDERS = ("oldest", UNCERTAINTY)
SCORE_BATCH = 64


@dataclass(frozen=True)
class ScoreJob:
    """Open tasks of one queue to score with one reward model: ids, prompts and completions."""

    queue_id: int
    reward_model_id: int
    reward_model_path: str
    task_ids: list[int]
    prompts: list[str]
    completions: list[list[str]]


@dataclass(frozen=True)
class OrderRow:
    """One open task as the queue page lists it in lease order."""

    position: int
    task_id: int
    uncertainty: float | None
    scored_by: str | None
    done: int
    overlap: int
    created_at: datetime


def orders_by_uncertainty(db: Session, queue_id: int) -> bool:
    """True when the queue leases its ranking tasks most uncertain first."""
    order = db.scalar(select(PromptQueue.task_order).where(PromptQueue.id == queue_id))
    return order == UNCERTAINTY


def latest_reward_model(db: Session) -> ModelVersion | None:
    """The newest registered reward model (the one that scores tasks)."""
    q = select(ModelVersion).where(ModelVersion.kind == ModelKind.reward.value)
    return db.scalar(q.order_by(ModelVersion.id.desc()).limit(1))


def uncertainty_queue_ids(db: Session) -> list[int]:
    """Unpaused ranking queues in uncertainty order."""
    return list(db.scalars(select(PromptQueue.id).where(
        PromptQueue.kind == TaskKind.ranking.value, PromptQueue.task_order == UNCERTAINTY,
        PromptQueue.is_paused.is_(False),
    ).order_by(PromptQueue.id)))


def _unscored(queue_id: int, rm_id: int) -> Select[Any]:
    return select(Task.id).where(
        Task.queue_id == queue_id, Task.status == TaskStatus.open.value,
        or_(Task.scored_by_id.is_(None), Task.scored_by_id != rm_id),
    ).order_by(Task.id)


def plan_scoring(db: Session, queue_id: int, limit: int = SCORE_BATCH) -> ScoreJob | None:
    """The next open tasks of the queue that the latest reward model has not scored, or None."""
    queue = db.get(PromptQueue, queue_id)
    rm = latest_reward_model(db)
    if queue is None or queue.task_order != UNCERTAINTY or rm is None:
        return None
    ids = [int(i) for i in db.scalars(_unscored(queue_id, rm.id).limit(limit))]
    if not ids:
        return None
    prompts = dict(db.execute(select(Task.id, Prompt.text).join(Prompt, Prompt.id == Task.prompt_id)
                              .where(Task.id.in_(ids))).all())
    comps: dict[int, list[str]] = {}
    for task_id, text in db.execute(
        select(Completion.task_id, Completion.text).where(Completion.task_id.in_(ids))
        .order_by(Completion.task_id, Completion.position)
    ):
        if task_id is not None:
            comps.setdefault(int(task_id), []).append(text)
    ids = [i for i in ids if i in prompts and len(comps.get(i, [])) >= 2]
    if not ids:
        return None
    return ScoreJob(queue_id, rm.id, rm.path, ids, [prompts[i] for i in ids], [comps[i] for i in ids])


def store_scores(db: Session, job: ScoreJob, uncertainties: list[float]) -> int:
    """Record each task's uncertainty under the job's reward model; returns how many were stored."""
    if len(uncertainties) != len(job.task_ids):
        raise ValueError("one uncertainty per task is needed")
    for task_id, value in zip(job.task_ids, uncertainties, strict=True):
        db.execute(update(Task).where(Task.id == task_id)
                   .values(uncertainty=float(value), scored_by_id=job.reward_model_id))
    db.flush()
    return len(job.task_ids)


def lease_order(db: Session, queue: PromptQueue, limit: int = 20) -> list[OrderRow]:
    """The queue's open tasks in the order leasing takes them (gold items apart), with their scores."""
    q = (
        select(Task, ModelVersion.name)
        .outerjoin(ModelVersion, ModelVersion.id == Task.scored_by_id)
        .where(Task.queue_id == queue.id, Task.status == TaskStatus.open.value, Task.is_gold.is_(False))
    )
    if queue.task_order == UNCERTAINTY:
        q = q.order_by(Task.uncertainty.desc().nulls_last(), Task.id)
    else:
        q = q.order_by(Task.id)
    return [
        OrderRow(i + 1, t.id, t.uncertainty, name, t.done_count, t.overlap, t.created_at)
        for i, (t, name) in enumerate(db.execute(q.limit(limit)))
    ]


def request_rescore(db: Session) -> None:
    """After this transaction commits, ask the sampling worker to rescore every uncertainty queue."""
    from app.queueing import enqueue_after_commit

    enqueue_after_commit(db, "active.rescore_all", queue="sampling")
