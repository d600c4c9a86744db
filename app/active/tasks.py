"""The sampling worker's scoring of ranking tasks by reward-model uncertainty (active learning).

Runs on the `sampling` queue, so the reward model is loaded in the worker, never in the web
process. The loaded model is kept between tasks for its directory (versions are immutable).
"""

from __future__ import annotations

import logging
from typing import Any

from app.active import service
from app.db import session_scope
from app.worker import celery_app

log = logging.getLogger("app.active")
_loaded: dict[str, Any] = {}


def _reward_model(path: str) -> Any:
    from training.models import load_reward_model_and_tokenizer

    if path not in _loaded:
        _loaded.clear()  # one reward model at a time: the latest
        _loaded[path] = load_reward_model_and_tokenizer(path)
    return _loaded[path]


def score_queue_now(queue_id: int, max_batches: int = 100) -> int:
    """Score the queue's open tasks that the latest reward model has not scored; returns how many."""
    from training.active import task_uncertainties

    scored = 0
    for _ in range(max_batches):
        with session_scope() as db:
            job = service.plan_scoring(db, queue_id)
        if job is None:
            break
        values = task_uncertainties(
            job.reward_model_path, list(zip(job.prompts, job.completions, strict=True)),
            loaded=_reward_model(job.reward_model_path),
        )
        with session_scope() as db:
            scored += service.store_scores(db, job, values)
    if scored:
        log.info("queue %s: %s ranking tasks scored by reward-model uncertainty", queue_id, scored)
    return scored


@celery_app.task(name="active.score_queue")
def score_queue(queue_id: int) -> int:
    """Score one queue's unscored open ranking tasks (after a restock)."""
    return score_queue_now(queue_id)


@celery_app.task(name="active.rescore_all")
def rescore_all() -> dict[int, int]:
    """Rescore every uncertainty-ordered queue with the latest reward model (after one is registered)."""
    with session_scope() as db:
        ids = service.uncertainty_queue_ids(db)
    return {queue_id: score_queue_now(queue_id) for queue_id in ids}
