"""What the labeler home shows: queues to work on, counts, time per task and agreement."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time
from itertools import combinations
from statistics import median

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.enums import AssignmentStatus, TaskStatus
from app.labeling import service
from app.labeling.models import Assignment, Task
from app.prompts.models import PromptQueue
from app.rankings.models import Ranking, RankingEntry


@dataclass
class QueueRow:
    """One queue on the home page: how much is there for this labeler, and a lease to resume."""

    queue: PromptQueue
    available: int
    open_tasks: int
    held_assignment_id: int | None


@dataclass
class Summary:
    """A labeler's own numbers."""

    done_today: int
    done_total: int
    skipped_total: int
    median_seconds: float | None
    agreed_pairs: int
    compared_pairs: int

    @property
    def agreement(self) -> float | None:
        """Share of comparison pairs on which the labeler agreed with others (None: no overlap yet)."""
        return self.agreed_pairs / self.compared_pairs if self.compared_pairs else None


def queues_for(db: Session, user: User) -> list[QueueRow]:
    """Unpaused queues with open work, highest priority first, with what `user` may take."""
    available = service.available_counts(db, user)
    open_counts = dict(
        db.execute(
            select(Task.queue_id, func.count(Task.id))
            .where(Task.status == TaskStatus.open.value)
            .group_by(Task.queue_id)
        ).all()
    )
    held: dict[int, int] = {}
    leases = db.scalars(
        select(Assignment).where(Assignment.user_id == user.id,
                                 Assignment.status == AssignmentStatus.leased.value)
    )
    for a in leases:
        if service.lease_is_live(a):
            held.setdefault(a.task.queue_id, a.id)
    queues = db.scalars(
        select(PromptQueue).where(PromptQueue.is_paused.is_(False))
        .order_by(PromptQueue.priority.desc(), PromptQueue.name)
    )
    return [
        QueueRow(q, available.get(q.id, 0), int(open_counts.get(q.id, 0)), held.get(q.id))
        for q in queues
        if open_counts.get(q.id) or q.id in held
    ]


def summary(db: Session, user: User) -> Summary:
    """Counts done today (UTC) and in total, median time per task and pairwise agreement."""
    start = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    done = Assignment.status == AssignmentStatus.submitted.value
    mine = Assignment.user_id == user.id
    total = db.scalar(select(func.count(Assignment.id)).where(mine, done)) or 0
    today = db.scalar(
        select(func.count(Assignment.id)).where(mine, done, Assignment.finished_at >= start)
    ) or 0
    skipped = db.scalar(
        select(func.count(Assignment.id)).where(mine, Assignment.status == AssignmentStatus.skipped.value)
    ) or 0
    recent = list(db.scalars(
        select(Assignment.time_spent_ms).where(mine, done).order_by(Assignment.finished_at.desc()).limit(200)
    ))
    agreed, compared = pairwise_agreement(db, user.id)
    return Summary(int(today), int(total), int(skipped), median(recent) / 1000 if recent else None,
                   agreed, compared)


def _tiers_by_ranking(db: Session, task_ids: list[int]) -> dict[int, dict[int, dict[int, int]]]:
    """task id -> user id -> {completion id: tier}."""
    out: dict[int, dict[int, dict[int, int]]] = defaultdict(dict)
    rows = db.execute(
        select(Ranking.task_id, Ranking.user_id, RankingEntry.completion_id, RankingEntry.tier)
        .join(RankingEntry, RankingEntry.ranking_id == Ranking.id)
        .where(Ranking.task_id.in_(task_ids))
    )
    for task_id, user_id, cid, tier in rows:
        out[task_id].setdefault(user_id, {})[cid] = tier
    return out


def pairwise_agreement(db: Session, user_id: int, limit: int = 500) -> tuple[int, int]:
    """(agreed, compared) comparison pairs between `user_id` and other labelers of the same tasks.

    A pair counts when both labelers ordered its two completions strictly (ties yield no
    comparison); they agree when they ordered it the same way. Over the user's latest `limit` rankings.
    """
    task_ids = list(db.scalars(
        select(Ranking.task_id).where(Ranking.user_id == user_id).order_by(Ranking.id.desc()).limit(limit)
    ))
    if not task_ids:
        return 0, 0
    agreed = compared = 0
    for by_user in _tiers_by_ranking(db, task_ids).values():
        mine = by_user.get(user_id)
        if mine is None:
            continue
        for other_id, theirs in by_user.items():
            if other_id == user_id:
                continue
            for a, b in combinations(sorted(set(mine) & set(theirs)), 2):
                d1, d2 = mine[a] - mine[b], theirs[a] - theirs[b]
                if d1 and d2:
                    compared += 1
                    agreed += (d1 > 0) == (d2 > 0)
    return agreed, compared
