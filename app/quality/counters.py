"""Agreement kept incrementally: each stored ranking adds its task's after-minus-before counts.

A task's counts depend only on that task's rankings (at most its overlap), so a submit costs
O(overlap^2 * K^2) and the polled pages read a handful of counter rows instead of every ranking.
The submit path holds the task's row lock, so concurrent submits of one task see each other's
rankings; the counter rows are bumped with an atomic upsert (queue row first, then labelers by id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.demonstrations.models import Demonstration
from app.labeling.models import Task
from app.quality import metrics
from app.quality.models import LabelerAgreement, QueueAgreement
from app.rankings.models import Ranking, RankingEntry

COLUMNS = ("items", "agree", "compared", "tau_sum", "tau_n")


@dataclass
class Agreement:
    """Pairwise agreement and mean tau for one labeler or one queue."""

    agree: int = 0
    compared: int = 0
    taus: list[float] = field(default_factory=list)
    items: int = 0
    tau_sum: float = 0.0
    tau_n: int = 0

    @property
    def rate(self) -> float | None:
        """Share of shared comparisons that agree."""
        return self.agree / self.compared if self.compared else None

    @property
    def tau(self) -> float | None:
        """Mean Kendall's tau against the consensus of the other labelers."""
        return self.tau_sum / self.tau_n if self.tau_n else None

    def add_tau(self, tau: float) -> None:
        """Count one labeler's tau on one item."""
        self.taus.append(tau)
        self.tau_sum += tau
        self.tau_n += 1


def _task_rankings(db: Session, task_id: int) -> list[tuple[int, int, dict[int, int]]]:
    """[(ranking id, user id, {completion id: tier})] of one task, oldest first."""
    rows = db.execute(
        select(Ranking.id, Ranking.user_id, RankingEntry.completion_id, RankingEntry.tier)
        .join(RankingEntry, RankingEntry.ranking_id == Ranking.id)
        .where(Ranking.task_id == task_id)
        .order_by(Ranking.id)
    )
    by_id: dict[int, tuple[int, int, dict[int, int]]] = {}
    for rid, uid, cid, tier in rows:
        by_id.setdefault(rid, (rid, uid, {}))[2][cid] = tier
    return list(by_id.values())


def ranking_added(db: Session, ranking: Ranking) -> None:
    """Add a just-flushed ranking's effect to its queue's and labelers' counters (same transaction).

    Call it with the task row locked (submit_ranking holds it), so the rankings read here
    include every committed one of this task.
    """
    task = db.get(Task, ranking.task_id)
    assert task is not None
    rows = _task_rankings(db, ranking.task_id)
    before = metrics.task_counts([(u, t) for rid, u, t in rows if rid != ranking.id])
    after = metrics.task_counts([(u, t) for _, u, t in rows])
    delta = metrics.counts_delta(before, after)
    if None in delta:
        _bump(db, QueueAgreement, {"queue_id": task.queue_id}, _values(delta[None]))
    for user_id in sorted({k for k in delta if k is not None} | {ranking.user_id}):
        values = _values(delta.get(user_id, metrics.ZERO)) | {"labels": int(user_id == ranking.user_id)}
        _bump(db, LabelerAgreement, {"queue_id": task.queue_id, "user_id": user_id}, values)


def label_added(db: Session, queue_id: int, user_id: int) -> None:
    """Count a stored demonstration (rankings are counted by ranking_added)."""
    keys = {"queue_id": queue_id, "user_id": user_id}
    _bump(db, LabelerAgreement, keys, {**_values(metrics.ZERO), "labels": 1})


def _bump(db: Session, model: type[QueueAgreement] | type[LabelerAgreement], keys: dict[str, int],
          values: dict[str, float | int]) -> None:
    """INSERT the counts, or add them to the existing row (one atomic statement on both databases)."""
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(model).values(**keys, **values)
    table = model.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: table.c[c] + stmt.excluded[c] for c in values}
    )
    db.execute(stmt)


def _label_counts(db: Session) -> dict[tuple[int, int], int]:
    """(queue id, user id) -> rankings and demonstrations stored."""
    out: dict[tuple[int, int], int] = {}
    for model in (Ranking, Demonstration):
        rows = db.execute(
            select(Task.queue_id, model.user_id, func.count())
            .join(Task, Task.id == model.task_id)
            .group_by(Task.queue_id, model.user_id)
        )
        for queue_id, user_id, n in rows:
            out[(queue_id, user_id)] = out.get((queue_id, user_id), 0) + int(n)
    return out


def _values(sums: list[float] | metrics.Counts) -> dict[str, float | int]:
    """Counts as column values (integers except tau_sum)."""
    return {c: float(v) if c == "tau_sum" else int(v) for c, v in zip(COLUMNS, sums, strict=True)}


def _from_row(row: QueueAgreement | LabelerAgreement | None) -> Agreement:
    if row is None:
        return Agreement()
    return Agreement(agree=row.agree, compared=row.compared, items=row.items, tau_sum=row.tau_sum,
                     tau_n=row.tau_n)


def queue_agreement(db: Session, queue_id: int) -> tuple[Agreement, dict[int, Agreement]]:
    """One queue's agreement and each of its labelers', read from the counters (two statements)."""
    total = _from_row(db.get(QueueAgreement, queue_id))
    per_user = {
        r.user_id: _from_row(r)
        for r in db.scalars(select(LabelerAgreement).where(LabelerAgreement.queue_id == queue_id))
    }
    return total, per_user


def all_agreement(db: Session) -> tuple[Agreement, dict[int, Agreement], dict[int, Agreement]]:
    """Overall, per-queue and per-labeler (over all queues) agreement from the counters."""
    per_queue = {r.queue_id: _from_row(r) for r in db.scalars(select(QueueAgreement))}
    total = Agreement()
    for a in per_queue.values():
        _add(total, a)
    sums = [func.coalesce(func.sum(getattr(LabelerAgreement, c)), 0) for c in COLUMNS]
    per_user = {}
    for user_id, items, agree, compared, tau_sum, tau_n in db.execute(
        select(LabelerAgreement.user_id, *sums).group_by(LabelerAgreement.user_id)
    ):
        per_user[user_id] = Agreement(agree=int(agree), compared=int(compared), items=int(items),
                                      tau_sum=float(tau_sum), tau_n=int(tau_n))
    return total, per_queue, per_user


def labels_per_user(db: Session) -> dict[int, int]:
    """user id -> rankings and demonstrations stored, over all queues (from the counters)."""
    per_user = select(LabelerAgreement.user_id, func.sum(LabelerAgreement.labels)).group_by(
        LabelerAgreement.user_id
    )
    return {int(u): int(n) for u, n in db.execute(per_user)}


def _add(into: Agreement, a: Agreement) -> None:
    into.items += a.items
    into.agree += a.agree
    into.compared += a.compared
    into.tau_sum += a.tau_sum
    into.tau_n += a.tau_n


def rebuild(db: Session) -> int:
    """Recompute every counter from the rankings (after a bulk load or a repair); tasks counted."""
    db.execute(delete(LabelerAgreement))
    db.execute(delete(QueueAgreement))
    rows = db.execute(
        select(Task.queue_id, Ranking.task_id, Ranking.id, Ranking.user_id, RankingEntry.completion_id,
               RankingEntry.tier)
        .join(Ranking, Ranking.task_id == Task.id)
        .join(RankingEntry, RankingEntry.ranking_id == Ranking.id)
        .order_by(Ranking.task_id, Ranking.id)
    )
    queues: dict[int, list[float]] = {}
    labelers: dict[tuple[int, int], list[float]] = {}
    tasks: dict[int, tuple[int, dict[int, tuple[int, dict[int, int]]]]] = {}
    for queue_id, task_id, rid, uid, cid, tier in rows:
        tasks.setdefault(task_id, (queue_id, {}))[1].setdefault(rid, (uid, {}))[1][cid] = tier
    for queue_id, by_ranking in tasks.values():
        for key, counts in metrics.task_counts(list(by_ranking.values())).items():
            target = (
                queues.setdefault(queue_id, [0.0] * 5)
                if key is None
                else labelers.setdefault((queue_id, key), [0.0] * 5)
            )
            for i, c in enumerate(counts):
                target[i] += c
    labels = _label_counts(db)
    for pair in labels:
        labelers.setdefault(pair, [0.0] * 5)
    for queue_id, sums in queues.items():
        db.add(QueueAgreement(queue_id=queue_id, **_values(sums)))
    for (queue_id, user_id), sums in labelers.items():
        db.add(LabelerAgreement(
            queue_id=queue_id, user_id=user_id, labels=labels.get((queue_id, user_id), 0), **_values(sums)
        ))
    db.flush()
    return len(tasks)
