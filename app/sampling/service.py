"""Which ranking queues need completions, for which prompts, from which policy versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from app.enums import PIIStatus, TaskKind, TaskStatus
from app.labeling import service as labeling
from app.labeling.models import Task
from app.policies import service as registry
from app.prompts.conversation import prompt_input
from app.prompts.models import Prompt, PromptQueue
from app.rankings.models import Completion

DEFAULT_PARAMS: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 48}
LABELABLE = (PIIStatus.clear.value, PIIStatus.redacted.value)


@dataclass(frozen=True)
class VersionRef:
    """A policy version to sample from: its id, directory and how many of the K it supplies."""

    id: int
    path: str
    share: int


@dataclass(frozen=True)
class StockJob:
    """One queue's shortfall: which prompts, how many completions from which versions."""

    queue_id: int
    k: int
    prompt_ids: list[int]
    # What each prompt's policy is conditioned on: its text, or its conversation (rendered by the
    # policy's chat template when sampled).
    prompt_texts: list[str | list[dict[str, str]]]
    versions: list[VersionRef]
    params: dict[str, Any]


def fresh_open_tasks(db: Session, queue_id: int) -> int:
    """Open tasks of a queue sampled from the deployed policy.

    Tasks from earlier versions stay labelable, but only the deployed policy's count towards the
    low-water mark, so a new deployment is sampled at once.
    """
    deployed = registry.deployed_policy(db)
    if deployed is None:
        return labeling.open_task_count(db, queue_id)
    fresh = exists().where(Completion.task_id == Task.id, Completion.policy_version_id == deployed.id)
    count = db.scalar(
        select(func.count(Task.id)).where(
            Task.queue_id == queue_id, Task.status == TaskStatus.open.value, fresh
        )
    )
    return int(count or 0)


def retire_stale_tasks(db: Session) -> int:
    """Retire open ranking tasks that no one has started and that show no completion of the deployed policy.

    After a deployment the oldest tasks (served first) would still be those sampled from the old
    policy; retiring the untouched ones lets the restock put the new policy and its baseline in
    front of labelers at once, so their win-rate is measured. Started or partly done tasks stay,
    and so do tasks without a policy's completions (seeded or imported candidates).
    """
    from app.labeling.models import Assignment

    deployed = registry.deployed_policy(db)
    if deployed is None:
        return 0
    from_policy = exists().where(Completion.task_id == Task.id, Completion.policy_version_id.is_not(None))
    from_current = exists().where(Completion.task_id == Task.id, Completion.policy_version_id == deployed.id)
    started = exists().where(Assignment.task_id == Task.id)
    ranking = select(PromptQueue.id).where(PromptQueue.kind == TaskKind.ranking.value)
    stale = db.execute(
        update(Task)
        .where(
            Task.queue_id.in_(ranking),
            Task.status == TaskStatus.open.value,
            Task.done_count == 0,
            from_policy,
            ~from_current,
            ~started,
        )
        .values(status=TaskStatus.retired.value)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(stale, "rowcount", 0) or 0)


def queues_running_low(db: Session) -> list[PromptQueue]:
    """Unpaused ranking queues with fewer fresh open tasks than their low-water mark."""
    queues = db.scalars(
        select(PromptQueue).where(
            PromptQueue.kind == TaskKind.ranking.value, PromptQueue.is_paused.is_(False)
        )
    )
    return [q for q in queues if fresh_open_tasks(db, q.id) < q.low_water]


def versions_for(db: Session, queue: PromptQueue) -> list[VersionRef]:
    """The deployed policy, or the deployed policy and its baseline sharing K, per the queue's mix.

    The baseline is the policy its round started from (what the deploy gate compared it with).
    """
    deployed = registry.deployed_policy(db)
    if deployed is None:
        return []
    mix = (queue.sampling or {}).get("mix", "deployed")
    parent = registry.baseline_of(db, deployed)
    if mix == "deployed+parent" and parent is not None:
        first = (queue.k + 1) // 2
        return [
            VersionRef(deployed.id, deployed.path, first),
            VersionRef(parent.id, parent.path, queue.k - first),
        ]
    return [VersionRef(deployed.id, deployed.path, queue.k)]


def prompts_to_sample(
    db: Session, queue: PromptQueue, version_id: int, limit: int, among: list[int] | None = None
) -> list[Prompt]:
    """Cleared prompts of the queue (optionally only `among`) without a task from `version_id` yet."""
    sampled = exists().where(
        Task.queue_id == queue.id,
        Task.prompt_id == Prompt.id,
        Completion.task_id == Task.id,
        Completion.policy_version_id == version_id,
    )
    q = select(Prompt).where(Prompt.queue_id == queue.id, Prompt.pii_status.in_(LABELABLE), ~sampled)
    if among is not None:
        q = q.where(Prompt.id.in_(among))
    return list(db.scalars(q.order_by(Prompt.id).limit(limit)))


def plan_restock(db: Session, queue: PromptQueue, batch: int = 32) -> StockJob | None:
    """What to sample for `queue`, or None when it is stocked, has no policy, or no prompts left."""
    versions = versions_for(db, queue)
    if not versions:
        return None
    shortfall = queue.low_water - fresh_open_tasks(db, queue.id)
    if shortfall <= 0:
        return None
    prompts = prompts_to_sample(db, queue, versions[0].id, min(batch, shortfall))
    if not prompts:
        return None
    params = {**DEFAULT_PARAMS, **{k: v for k, v in (queue.sampling or {}).items() if k in DEFAULT_PARAMS}}
    inputs = [prompt_input(p.text, p.messages) for p in prompts]
    return StockJob(queue.id, queue.k, [p.id for p in prompts], inputs, versions, params)


def store_samples(db: Session, job: StockJob, samples: dict[int, list[list[Any]]]) -> int:
    """Create one ranking task per prompt from the sampled completions; returns tasks created.

    `samples[version_id][i]` holds that version's completions for prompt i (objects with
    .text, .finished and .params). Skips a queue or deployment that changed meanwhile.
    """
    queue = db.get(PromptQueue, job.queue_id)
    deployed = registry.deployed_policy(db)
    if queue is None or deployed is None or deployed.id != job.versions[0].id or queue.k != job.k:
        return 0
    # Another restock may have stocked some of these prompts while this one sampled.
    still_due = {
        p.id
        for p in prompts_to_sample(db, queue, job.versions[0].id, len(job.prompt_ids), among=job.prompt_ids)
    }
    created = 0
    for i, prompt_id in enumerate(job.prompt_ids):
        prompt = db.get(Prompt, prompt_id)
        if prompt is None or prompt.id not in still_due:
            continue
        rows = [
            Completion(
                # PostgreSQL text cannot hold NUL, which a byte-level model can sample.
                text=c.text.replace("\x00", "\ufffd"),
                finished=bool(c.finished),
                policy_version_id=v.id,
                sampling_params={**dict(c.params), "version": v.id},
            )
            for v in job.versions
            for c in samples[v.id][i]
        ]
        labeling.add_ranking_task(db, queue, prompt, rows)
        created += 1
    return created


def request_restock_for(db: Session, queue_id: int | None) -> list[int]:
    """After a lease: restock that queue (or, with no queue, every ranking queue) if it runs low."""
    if queue_id is not None:
        queue = db.get(PromptQueue, queue_id)
        return [queue_id] if queue is not None and request_restock(db, queue) else []
    return [q.id for q in queues_running_low(db) if request_restock(db, q)]


# Per web process: one restock request per queue per interval is plenty (the task tops the queue up).
RESTOCK_REQUEST_INTERVAL_S = 2.0
_last_request: dict[int, float] = {}


def request_restock(db: Session, queue: PromptQueue) -> bool:
    """Enqueue a restock (after commit) when a ranking queue has fallen under its low-water mark."""
    import time

    from app.queueing import enqueue_after_commit

    if queue.kind != TaskKind.ranking.value or queue.is_paused:
        return False
    now = time.monotonic()
    if now - _last_request.get(queue.id, -1e9) < RESTOCK_REQUEST_INTERVAL_S:
        return False
    if fresh_open_tasks(db, queue.id) >= queue.low_water:
        return False
    queue_id = queue.id

    def _sent(_task_id: str) -> None:
        # Only a request the broker took starts the quiet interval: after an outage the next
        # request goes through at once.
        _last_request[queue_id] = time.monotonic()

    enqueue_after_commit(db, "sampling.restock_queue", queue_id, queue="sampling", on_sent=_sent)
    return True
