"""Quality control read from the label tables: agreement, gold accuracy, throughput, review, pausing.

Reads Ranking/RankingEntry/Demonstration/Assignment directly, so it depends on no labeling code.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User, UserRole
from app.config import Settings
from app.db import utcnow
from app.demonstrations.models import Demonstration
from app.enums import Role, TaskKind, TaskStatus
from app.errors import NotFound
from app.labeling.models import Assignment, Task
from app.prompts.models import PromptQueue
from app.quality import counters, metrics
from app.quality.counters import Agreement
from app.rankings.models import Ranking, RankingEntry

GOLD_OVERLAP = 1000
# The quality page's time per task is the median over each labeler's latest this-many labels.
RECENT_LABELS = 200


@dataclass
class LabelerStats:
    """One labeler's row on the quality page."""

    user: User
    agreement: Agreement = field(default_factory=Agreement)
    gold_items: int = 0
    gold_accuracy: float | None = None
    labels: int = 0
    labels_24h: int = 0
    median_s: float | None = None
    labels_per_hour: float | None = None
    below_gold: bool = False


def _tiers_by_task(
    db: Session, queue_id: int | None = None, task_ids: list[int] | None = None
) -> dict[int, list[tuple[int, dict[int, int]]]]:
    """task id -> [(user id, {completion id: tier})] for every ranking (of one queue or some tasks)."""
    q = (
        select(Ranking.task_id, Ranking.user_id, Ranking.id, RankingEntry.completion_id, RankingEntry.tier)
        .join(RankingEntry, RankingEntry.ranking_id == Ranking.id)
        .order_by(Ranking.id)
    )
    if queue_id is not None:
        q = q.join(Task, Task.id == Ranking.task_id).where(Task.queue_id == queue_id)
    if task_ids is not None:
        q = q.where(Ranking.task_id.in_(task_ids))
    by_ranking: dict[int, tuple[int, int, dict[int, int]]] = {}
    for task_id, user_id, ranking_id, completion_id, tier in db.execute(q):
        by_ranking.setdefault(ranking_id, (task_id, user_id, {}))[2][completion_id] = tier
    out: dict[int, list[tuple[int, dict[int, int]]]] = defaultdict(list)
    for task_id, user_id, tiers in by_ranking.values():
        out[task_id].append((user_id, tiers))
    return out


def agreement(db: Session, queue_id: int | None = None) -> tuple[Agreement, dict[int, Agreement]]:
    """Overall (or one queue's) agreement, and each labeler's, recomputed from every ranking.

    Reads every ranking: the pages read app.quality.counters instead; this is the reference
    the counters are tested against.
    """
    total = Agreement()
    per_user: defaultdict[int, Agreement] = defaultdict(Agreement)
    for rankings in _tiers_by_task(db, queue_id).values():
        if len(rankings) < 2:
            continue
        total.items += 1
        for i, (u, tiers) in enumerate(rankings):
            per_user[u].items += 1
            tau = metrics.tau_against_consensus(tiers, [t for j, (_, t) in enumerate(rankings) if j != i])
            if tau is not None:
                per_user[u].add_tau(tau)
                total.add_tau(tau)
            for v, other in rankings[i + 1 :]:
                agree, compared = metrics.pair_agreement(tiers, other)
                total.agree += agree
                total.compared += compared
                for who in (u, v):
                    per_user[who].agree += agree
                    per_user[who].compared += compared
    return total, dict(per_user)


def queue_agreements(db: Session, per_queue: dict[int, Agreement] | None = None) -> dict[int, Agreement]:
    """Agreement per ranking queue id, from the counters."""
    if per_queue is None:
        per_queue = counters.all_agreement(db)[1]
    return {
        q.id: per_queue.get(q.id, Agreement())
        for q in db.scalars(
            select(PromptQueue).where(PromptQueue.kind == TaskKind.ranking.value).order_by(PromptQueue.id)
        )
    }


def gold_accuracy(db: Session) -> dict[int, tuple[int, float]]:
    """user id -> (gold items answered, mean gold score) from gold rankings only."""
    scores: dict[int, list[float]] = defaultdict(list)
    gold = {t.id: t.gold_answer for t in db.scalars(select(Task).where(Task.is_gold.is_(True)))}
    if not gold:
        return {}
    tiers = _tiers_by_task(db, task_ids=list(gold))
    for task_id, answer in gold.items():
        ranks = {int(k): int(v) for k, v in ((answer or {}).get("ranks") or {}).items()}
        for user_id, given in tiers.get(task_id, []):
            score = metrics.gold_score(ranks, given)
            if score is not None:
                scores[user_id].append(score)
    return {u: (len(s), sum(s) / len(s)) for u, s in scores.items()}


def throughput(db: Session, now: datetime | None = None) -> dict[int, tuple[int, int, float | None]]:
    """user id -> (labels, labels in the last 24 h, median seconds per label) from rankings and demos.

    Totals come from the counters, the last 24 h from a created_at range, the median from each
    labeler's latest RECENT_LABELS labels: the rows read do not grow with the number of labels.
    """
    since = (now or utcnow()) - timedelta(hours=24)
    labels = counters.labels_per_user(db)
    recent: dict[int, int] = defaultdict(int)
    for model in (Ranking, Demonstration):
        # Counted here, not by GROUP BY, so the created_at index drives the read (the day's labels).
        for user_id in db.scalars(select(model.user_id).where(model.created_at >= since)):
            recent[user_id] += 1
    out = {}
    for user_id, n in labels.items():
        if not n:
            continue
        positive = [s for s in _latest_times(db, user_id) if s > 0]
        median_s = statistics.median(positive) / 1000 if positive else None
        out[user_id] = (n, recent[user_id], median_s)
    return out


def _latest_times(db: Session, user_id: int) -> list[int]:
    """Time spent (ms) on a labeler's latest RECENT_LABELS rankings and demonstrations together."""
    rows: list[tuple[datetime, int]] = []
    for model in (Ranking, Demonstration):
        latest = (
            select(model.created_at, model.time_spent_ms)
            .where(model.user_id == user_id)
            .order_by(model.id.desc())
            .limit(RECENT_LABELS)
        )
        rows += [(at, spent) for at, spent in db.execute(latest)]
    rows.sort(key=lambda r: _aware(r[0]), reverse=True)
    return [int(spent or 0) for _, spent in rows[:RECENT_LABELS]]


def _aware(at: datetime) -> datetime:
    from datetime import UTC

    return at if at.tzinfo else at.replace(tzinfo=UTC)


def labeler_stats(
    db: Session, settings: Settings, per_user: dict[int, Agreement] | None = None
) -> list[LabelerStats]:
    """One row per labeler: agreement, tau, gold accuracy, throughput and time per task."""
    if per_user is None:
        per_user = counters.all_agreement(db)[2]
    gold, speed = gold_accuracy(db), throughput(db)
    users = db.scalars(
        select(User).join(UserRole).where(UserRole.role == Role.labeler.value).order_by(User.username)
    )
    rows = []
    for user in users:
        row = LabelerStats(user=user, agreement=per_user.get(user.id, Agreement()))
        if user.id in gold:
            row.gold_items, row.gold_accuracy = gold[user.id]
            row.below_gold = (
                row.gold_items >= settings.gold_min_items and row.gold_accuracy < settings.gold_min_accuracy
            )
        if user.id in speed:
            row.labels, row.labels_24h, row.median_s = speed[user.id]
            row.labels_per_hour = round(3600 / row.median_s, 1) if row.median_s else None
        rows.append(row)
    return rows


def set_paused(db: Session, user_id: int, paused: bool) -> User:
    """Pause a labeler (they get no tasks) or let them work again."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("There is no such user.")
    user.is_paused = paused
    db.flush()
    return user


def pause_below_gold(db: Session, settings: Settings) -> list[User]:
    """Pause every labeler whose gold accuracy is under the threshold (after enough gold items)."""
    paused = []
    for row in labeler_stats(db, settings):
        if row.below_gold and not row.user.is_paused:
            row.user.is_paused = True
            paused.append(row.user)
    db.flush()
    return paused


def mark_gold_from_ranking(db: Session, ranking_id: int) -> Task:
    """Make a ranking's task a gold item whose answer is that ranking's tiers."""
    ranking = db.get(Ranking, ranking_id)
    if ranking is None:
        raise NotFound("There is no such ranking.")
    task = db.get(Task, ranking.task_id)
    assert task is not None
    answer = {"ranks": {str(e.completion_id): e.tier for e in ranking.entries}, "from_ranking": ranking.id}
    return _make_gold(db, task, answer)


def mark_gold_from_demonstration(db: Session, demonstration_id: int) -> Task:
    """Make a demonstration's task a gold item whose reference answer is that text."""
    demo = db.get(Demonstration, demonstration_id)
    if demo is None:
        raise NotFound("There is no such demonstration.")
    task = db.get(Task, demo.task_id)
    assert task is not None
    return _make_gold(db, task, {"text": demo.text, "from_demonstration": demo.id})


def _make_gold(db: Session, task: Task, answer: dict[str, Any]) -> Task:
    # A gold item is served to every labeler (once each), so it stays open past its overlap.
    task.is_gold, task.gold_answer = True, answer
    task.overlap = max(task.overlap, GOLD_OVERLAP)
    if task.status == TaskStatus.done.value:
        task.status, task.completed_at = TaskStatus.open.value, None
    db.flush()
    return task


def unmark_gold(db: Session, task_id: int) -> Task:
    """Turn a gold item back into an ordinary task."""
    task = db.get(Task, task_id)
    if task is None:
        raise NotFound("There is no such task.")
    task.is_gold, task.gold_answer = False, None
    queue = db.get(PromptQueue, task.queue_id)
    task.overlap = max(queue.overlap if queue else 1, task.done_count, 1)
    if task.status == TaskStatus.open.value and task.done_count >= task.overlap:
        task.status, task.completed_at = TaskStatus.done.value, utcnow()
    db.flush()
    return task


def pick_gold_task(
    db: Session, queue: PromptQueue, user: User, rng: random.Random | None = None
) -> Task | None:
    """With probability queue.gold_rate, a gold task of `queue` this labeler has not had yet.

    For the lease code: leave gold tasks out of the ordinary pick and call this first; gold
    items are open to every labeler once (their overlap is raised to GOLD_OVERLAP).
    """
    if queue.gold_rate <= 0 or (rng or random).random() >= queue.gold_rate:
        return None
    had = select(Assignment.task_id).where(Assignment.user_id == user.id)
    return db.scalar(
        select(Task)
        .where(
            Task.queue_id == queue.id,
            Task.is_gold.is_(True),
            Task.status != TaskStatus.retired.value,
            ~Task.id.in_(had),
        )
        .order_by(Task.id)
        .limit(1)
    )


def quality_overview(db: Session, settings: Settings) -> dict[str, Any]:
    """The quality page: overall and per-queue agreement, per-labeler rows, the gold threshold."""
    total, per_queue, per_user = counters.all_agreement(db)
    queues = {q.id: q for q in db.scalars(select(PromptQueue))}
    return {
        "total": total,
        "per_queue": [(queues[qid], a) for qid, a in queue_agreements(db, per_queue).items()],
        "labelers": labeler_stats(db, settings, per_user),
        "threshold": settings.gold_min_accuracy,
        "min_items": settings.gold_min_items,
        "gold_tasks": list(db.scalars(select(Task).where(Task.is_gold.is_(True)).order_by(Task.id))),
    }


def labelers(db: Session) -> list[User]:
    """Every user holding the labeler role, by username."""
    return list(
        db.scalars(
            select(User).join(UserRole).where(UserRole.role == Role.labeler.value).order_by(User.username)
        )
    )
