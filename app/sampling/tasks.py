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
    """Sample each version's share of K for every prompt of the job (prompt computed once per K)."""
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
    return created


@celery_app.task(name="sampling.restock_all")
def restock_all() -> list[int]:
    """Enqueue a restock for every ranking queue under its low-water mark (scheduled by beat)."""
    with session_scope() as db:
        ids = [q.id for q in service.queues_running_low(db)]
    for queue_id in ids:
        send("sampling.restock_queue", [queue_id], queue="sampling")
    return ids
