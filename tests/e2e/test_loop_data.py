"""Labels written straight into the tables for worker-focused end-to-end tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.demonstrations.models import Demonstration
from app.labeling.models import Assignment, Task
from app.labeling.service import add_ranking_task
from app.prompts.models import Prompt, PromptQueue
from app.rankings.models import Completion, Ranking, RankingEntry


def seed_labels(db: Session, ids: dict[str, Any]) -> None:
    """Demonstrations and rankings by the simulated labelers, as if submitted through the pages."""
    import random

    from training.world import SimulatedLabeler, candidate_completions, parse_prompt

    lab = SimulatedLabeler(seed=1)
    rng = random.Random(1)
    user = db.scalar(select(User).where(User.username == "e2e_alice"))
    assert user is not None
    for task in db.scalars(select(Task).where(Task.queue_id == ids["demos"])).all()[:10]:
        prompt = db.get(Prompt, task.prompt_id)
        a = Assignment(task_id=task.id, user_id=user.id, status="submitted", lease_expires_at=utcnow())
        db.add(a)
        db.flush()
        db.add(
            Demonstration(
                assignment_id=a.id,
                task_id=task.id,
                prompt_id=prompt.id,
                user_id=user.id,
                text=lab.demonstrate(prompt.text),
            )
        )
        task.done_count, task.status = 1, "done"
    ranks = db.get(PromptQueue, ids["ranks"])
    for prompt in db.scalars(select(Prompt).where(Prompt.queue_id == ids["ranks"])).all()[:8]:
        wp = parse_prompt(prompt.text)
        texts = candidate_completions(wp, 4, rng)
        task = add_ranking_task(db, ranks, prompt, [Completion(text=t) for t in texts])
        a = Assignment(task_id=task.id, user_id=user.id, status="submitted", lease_expires_at=utcnow())
        db.add(a)
        db.flush()
        comps = db.scalars(
            select(Completion).where(Completion.task_id == task.id).order_by(Completion.position)
        )
        r = Ranking(assignment_id=a.id, task_id=task.id, user_id=user.id)
        r.entries = [
            RankingEntry(completion_id=c.id, tier=t) for c, t in zip(comps, lab.rank(wp, texts), strict=True)
        ]
        db.add(r)
        task.done_count, task.status = 1, "done"
    db.flush()
