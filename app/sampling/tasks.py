"""The `sampling` queue: K completions per prompt from the deployed policy, in batches.

The worker keeps loaded models in memory between tasks (one Sampler per version directory) and
drops those no longer needed; only registered, complete version directories are ever loaded.
"""

from __future__ import annotations

import logging
from typing import Any

from app.db import session_scope
from app.prompts.models import PromptQueue
from app.queueing import send
from app.sampling import service
from app.worker import celery_app

log = logging.getLogger("app.sampling")
_samplers: dict[str, Any] = {}


def sampler_for(path: str) -> Any:
    """A Sampler for a version directory, loaded once per worker process."""
    from training.generate import Sampler

    if path not in _samplers:
        _samplers[path] = Sampler(path)
    return _samplers[path]


def _forget_others(keep: set[str]) -> None:
    for path in list(_samplers):
        if path not in keep:
            del _samplers[path]


def sample_for(job: service.StockJob) -> dict[int, list[list[Any]]]:
    """Sample each version's share of K for every prompt of the job (prompt computed once per K).

    As drawn, not Sampler.sample_distinct: these rankings also compare the deployed version with its
    parent, and forcing distinct texts would show a confident policy's rarer (worse) answers in place
    of the answer it repeats, biasing that comparison against it."""
    from training.config import SamplingParams

    params = SamplingParams(
        **{k: v for k, v in job.params.items() if k in SamplingParams.__dataclass_fields__}
    )
    _forget_others({v.path for v in job.versions})
    return {v.id: sampler_for(v.path).sample(job.prompt_texts, v.share, params) for v in job.versions}


@celery_app.task(name="sampling.restock_queue")
def restock_queue(queue_id: int) -> int:
    """Top up one ranking queue; returns the number of tasks created."""
    with session_scope() as db:
        queue = db.get(PromptQueue, queue_id)
        job = service.plan_restock(db, queue) if queue else None
    if job is None:
        return 0
    samples = sample_for(job)
    with session_scope() as db:
        created = service.store_samples(db, job, samples)
    log.info("queue %s: %s ranking tasks sampled", queue_id, created)
    _score_if_ordered(queue_id)
    return created


def _score_if_ordered(queue_id: int) -> None:
    """A queue in uncertainty order gets its new tasks scored by the latest reward model at once."""
    from app.active import service as active
    from app.active.tasks import score_queue_now

    with session_scope() as db:
        wanted = active.orders_by_uncertainty(db, queue_id)
    if not wanted:
        return
    try:
        score_queue_now(queue_id)
    except Exception:  # the tasks stay leasable (unscored ones come last); the next restock retries
        log.exception("queue %s: scoring by reward-model uncertainty failed", queue_id)


@celery_app.task(name="sampling.restock_all")
def restock_all() -> list[int]:
    """Enqueue a restock for every ranking queue under its low-water mark (scheduled by beat)."""
    from app.active import service as active

    with session_scope() as db:
        ids = [q.id for q in service.queues_running_low(db)]
        ordered = active.uncertainty_queue_ids(db)
    for queue_id in ids:
        send("sampling.restock_queue", [queue_id], queue="sampling")
    if ordered:  # tasks stocked any other way (seeds, imports) get scored too; scored ones are skipped
        send("active.rescore_all", [], queue="sampling")
    return ids
