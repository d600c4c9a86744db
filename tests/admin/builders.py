"""Label rows for quality and export tests, written straight into the tables."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.demonstrations.models import Demonstration
from app.enums import AssignmentStatus
from app.labeling.models import Assignment, Task
from app.quality import counters
from app.rankings.models import Completion, Ranking, RankingEntry


def assignment(
    db: Session, task: Task, user: User, status: str = AssignmentStatus.submitted.value, **fields: object
) -> Assignment:
    """A lease row (submitted by default)."""
    now = utcnow()
    a = Assignment(
        task_id=task.id,
        user_id=user.id,
        status=status,
        lease_expires_at=now + timedelta(minutes=15),
        finished_at=None if status == AssignmentStatus.leased.value else now,
        **fields,
    )
    db.add(a)
    db.flush()
    return a


def ranking(
    db: Session,
    task: Task,
    user: User,
    tiers: list[int],
    *,
    flags: dict[int, list[str]] | None = None,
    time_spent_ms: int = 30_000,
    guideline_version_id: int | None = None,
) -> Ranking:
    """A submitted ranking: tiers[i] is the tier of the completion at position i."""
    comps = list(
        db.scalars(select(Completion).where(Completion.task_id == task.id).order_by(Completion.position))
    )
    assert len(comps) == len(tiers)
    a = assignment(db, task, user)
    r = Ranking(
        assignment_id=a.id,
        task_id=task.id,
        user_id=user.id,
        display_order=[c.id for c in comps],
        time_spent_ms=time_spent_ms,
        guideline_version_id=guideline_version_id,
    )
    r.entries = [
        RankingEntry(
            completion_id=c.id, tier=t, likert=8 - t if t <= 7 else 1, flags=(flags or {}).get(i, [])
        )
        for i, (c, t) in enumerate(zip(comps, tiers, strict=True))
    ]
    db.add(r)
    db.flush()
    counters.ranking_added(db, r)  # what submit_ranking does after storing one
    return r


def demonstration(
    db: Session,
    task: Task,
    user: User,
    text: str,
    time_spent_ms: int = 60_000,
    guideline_version_id: int | None = None,
) -> Demonstration:
    """A submitted demonstration."""
    a = assignment(db, task, user)
    assert task.prompt_id is not None
    d = Demonstration(
        assignment_id=a.id,
        task_id=task.id,
        prompt_id=task.prompt_id,
        user_id=user.id,
        text=text,
        time_spent_ms=time_spent_ms,
        guideline_version_id=guideline_version_id,
    )
    db.add(d)
    db.flush()
    counters.label_added(db, task.queue_id, user.id)  # what submit_demonstration does
    return d
