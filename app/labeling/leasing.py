"""Which tasks a labeler may be served, and leasing a slot of one under the task row's lock.

`app.labeling.service` re-exports the entry points (`next_task`, `live_lease`,
`available_counts`, `expire_leases`); other domains call them there.

Concurrency: a slot is taken only while holding the task row's lock. On PostgreSQL the
candidate is locked with `SELECT ... FOR UPDATE SKIP LOCKED` (other labelers move on to the
next task instead of waiting), then the free slots are recounted in a fresh statement, which
sees every lease committed before the lock was granted. On SQLite every transaction starts
with BEGIN IMMEDIATE (app/db.py), so writers are serialized and the same count is exact.

No deadlocks: a transaction never waits for a task row while it holds another one. A submit
(or skip) leases in the transaction that holds its own task's lock, so it leases with
wait=False (skipped rows only); a transaction that holds no task lock (the labeler's "next
task") waits for one candidate at a time, in a savepoint that is rolled back, releasing the row,
when that task has no slot after all. Two submits each waiting for the other's task, or a
submit's first lock queued behind such waits, was a deadlock seen as a 503 at a queue's end.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session

from app.active.service import orders_by_uncertainty
from app.auth.models import User
from app.config import get_settings
from app.db import utcnow
from app.enums import AssignmentStatus, PIIStatus, TaskKind, TaskStatus
from app.errors import Forbidden
from app.labeling.models import Assignment, Task
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
from app.rankings.models import Completion

SERVABLE_PII = (PIIStatus.clear.value, PIIStatus.redacted.value)
# Rows locked per attempt while looking for a slot; each is rechecked after its lock.
_MAX_ATTEMPTS = 50


# ---------------------------------------------------------------- eligibility


def _live(now: datetime) -> ColumnElement[bool]:
    return and_(Assignment.status == AssignmentStatus.leased.value, Assignment.lease_expires_at > now)


def _slots_taken(now: datetime) -> ColumnElement[int]:
    """Correlated count of a task's unexpired leases (submitted labels are in done_count)."""
    live = select(func.count(Assignment.id)).where(Assignment.task_id == Task.id, _live(now))
    return live.scalar_subquery()


def _eligible(user_id: int, now: datetime) -> list[ColumnElement[bool]]:
    """Conditions for a task the user may be served now (slot count from this statement's snapshot),
    on a statement that joins the task's queue and outer-joins its prompt (`_tasks_with`)."""
    blocked = exists().where(
        Assignment.task_id == Task.id,
        Assignment.user_id == user_id,
        or_(
            Assignment.status.in_([AssignmentStatus.submitted.value, AssignmentStatus.skipped.value]),
            _live(now),
        ),
    )
    # The prompt by an outer join, not EXISTS: inside this OR PostgreSQL runs an EXISTS as a
    # hashed subplan, a scan of every prompt per lease (app.labeling.hotpath._SERVABLE).
    servable_prompt = or_(
        and_(Task.prompt_id.is_(None), Task.kind == TaskKind.write_prompt.value),
        and_(
            Prompt.pii_status.in_(SERVABLE_PII),
            or_(Prompt.author_id.is_(None), Prompt.author_id != user_id),
        ),
    )
    return [
        Task.status == TaskStatus.open.value,
        Task.done_count + _slots_taken(now) < Task.overlap,
        not_(blocked),
        servable_prompt,
        PromptQueue.is_paused.is_(False),
        # Gold items are injected at the queue's gold rate by _gold_lease, never picked in order.
        Task.is_gold.is_(False),
    ]


def _tasks_with(*columns: Any) -> Select[Any]:
    """SELECT columns FROM tasks with the queue and the prompt that _eligible reads."""
    return (
        select(*columns)
        .join(PromptQueue, PromptQueue.id == Task.queue_id)
        .outerjoin(Prompt, Prompt.id == Task.prompt_id)
    )


def available_counts(db: Session, user: User) -> dict[int, int]:
    """Per queue id: how many tasks `user` could be served right now."""
    now = utcnow()
    rows = db.execute(
        _tasks_with(Task.queue_id, func.count(Task.id))
        .where(*_eligible(user.id, now))
        .group_by(Task.queue_id)
    ).all()
    return {int(q): int(n) for q, n in rows}


NOTHING_NEXT = "There is nothing more for you in this queue right now."
BUSY_NEXT = ("The tasks left in this queue are being handed out to other labelers at this moment: "
             "choose Next task to take the next free one.")


def nothing_next(db: Session, user_id: int, queue_id: int | None) -> str:
    """What to tell a labeler (not paused) whose lease without waiting found no task: nothing is
    left for them, or what is left is locked by other labelers' leases and submits right now."""
    stmt = _tasks_with(func.count(Task.id)).where(*_eligible(user_id, utcnow()))
    if queue_id is not None:
        stmt = stmt.where(Task.queue_id == queue_id)
    return BUSY_NEXT if db.scalar(stmt) else NOTHING_NEXT


def live_lease(db: Session, user: User, queue_id: int | None = None) -> Assignment | None:
    """The user's unexpired lease (in one queue, or any), oldest first, to resume."""
    stmt = (
        select(Assignment)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.user_id == user.id, _live(utcnow()), Task.status == TaskStatus.open.value)
    )
    if queue_id is not None:
        stmt = stmt.where(Task.queue_id == queue_id)
    return db.scalars(stmt.order_by(Assignment.leased_at).limit(1)).first()


def expire_leases(db: Session, now: datetime | None = None, task_id: int | None = None) -> int:
    """Mark leases past their expiry as expired (their slots are already free); return how many.

    Slot counting never depends on this status (it compares lease_expires_at), so the sweep is
    bookkeeping: run for one task when its slot is re-leased, and for all by the Celery task.
    """
    now = now or utcnow()
    stmt = update(Assignment).where(
        Assignment.status == AssignmentStatus.leased.value, Assignment.lease_expires_at <= now
    )
    if task_id is not None:
        stmt = stmt.where(Assignment.task_id == task_id)
    result = db.execute(
        stmt.values(status=AssignmentStatus.expired.value).execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


# ---------------------------------------------------------------- leasing


def _lock_task(db: Session, task_id: int, *, skip_locked: bool = False) -> Task | None:
    """Lock one task row and reload it: waits for a concurrent holder, or None if one holds it
    and `skip_locked`."""
    stmt = select(Task).where(Task.id == task_id).with_for_update(skip_locked=skip_locked)
    return db.scalars(stmt.execution_options(populate_existing=True)).first()


def free_slots(db: Session, task: Task, now: datetime, exclude_user: int | None = None) -> int:
    """Slots left on a locked task, counted in a fresh statement (sees all committed leases)."""
    stmt = select(func.count(Assignment.id)).where(Assignment.task_id == task.id, _live(now))
    if exclude_user is not None:
        stmt = stmt.where(Assignment.user_id != exclude_user)
    return task.overlap - task.done_count - int(db.scalar(stmt) or 0)


def _open_slot(db: Session, task: Task, now: datetime) -> bool:
    return task.status == TaskStatus.open.value and free_slots(db, task, now) > 0


def _candidate(
    db: Session, user: User, queue_id: int | None, now: datetime, skip: list[int], skip_locked: bool,
    by_uncertainty: bool = False,
) -> int | None:
    stmt = _tasks_with(Task.id).where(*_eligible(user.id, now))
    if queue_id is not None and by_uncertainty:
        # Active learning (app/active): the reward model's most uncertain task first, unscored last.
        stmt = stmt.where(Task.queue_id == queue_id).order_by(Task.uncertainty.desc().nulls_last(), Task.id)
    elif queue_id is not None:
        # One queue: priority is constant, so walk (queue_id, status, id) in index order and stop
        # at the first eligible task instead of sorting every open task of the queue.
        stmt = stmt.where(Task.queue_id == queue_id).order_by(Task.id)
    else:
        uncertain_first = case(
            (PromptQueue.task_order == "uncertainty", func.coalesce(Task.uncertainty, -1.0)), else_=0.0
        )
        stmt = stmt.order_by(PromptQueue.priority.desc(), uncertain_first.desc(), Task.id)
    stmt = stmt.limit(1)
    if skip:
        stmt = stmt.where(Task.id.not_in(skip))
    if db.get_bind().dialect.name == "postgresql":
        # Lock only the task row; other labelers skip it rather than queue behind it.
        stmt = stmt.with_for_update(skip_locked=skip_locked, of=Task)
    found = db.scalar(stmt)
    return int(found) if found is not None else None


def _latest_guideline_id(db: Session, queue_id: int) -> int | None:
    return db.scalar(
        select(GuidelineVersion.id)
        .where(GuidelineVersion.queue_id == queue_id)
        .order_by(GuidelineVersion.version.desc())
        .limit(1)
    )


def _lease(db: Session, user: User, task: Task, now: datetime) -> Assignment:
    """Create (or revive the user's own expired) assignment for a locked task."""
    expires = now + timedelta(seconds=get_settings().lease_seconds)
    expire_leases(db, now, task_id=task.id)  # the task row is locked: no contention here
    guideline_id = _latest_guideline_id(db, task.queue_id)
    mine = db.scalar(select(Assignment).where(Assignment.task_id == task.id, Assignment.user_id == user.id))
    if mine is None:
        order = list(db.scalars(select(Completion.id).where(Completion.task_id == task.id)))
        random.SystemRandom().shuffle(order)
        mine = Assignment(task_id=task.id, user_id=user.id, display_order=order)
        db.add(mine)
    # A revived lease keeps its draft and display order: the labeler picks up where they left.
    mine.status = AssignmentStatus.leased.value
    mine.leased_at = now
    mine.lease_expires_at = expires
    mine.guideline_version_id = guideline_id
    db.flush()
    return mine


def _gold_lease(
    db: Session, user: User, queue_id: int | None, now: datetime, *, skip_locked: bool = False
) -> Assignment | None:
    """At each queue's gold rate, lease a gold item this labeler has not had (quality control)."""
    from app.quality.service import pick_gold_task

    q = select(PromptQueue).where(PromptQueue.gold_rate > 0, PromptQueue.is_paused.is_(False))
    if queue_id is not None:
        q = q.where(PromptQueue.id == queue_id)
    for queue in db.scalars(q.order_by(PromptQueue.priority.desc())):
        task = pick_gold_task(db, queue, user)
        locked = _lock_task(db, task.id, skip_locked=skip_locked) if task is not None else None
        if locked is not None and locked.status != TaskStatus.retired.value:
            return _lease(db, user, locked, now)
    return None


def next_task(
    db: Session, user: User, queue_id: int | None = None, *, wait: bool = True
) -> Assignment | None:
    """Lease the next task slot for `user` (highest queue priority, then oldest task or, in a queue
    ordered by uncertainty, the reward model's most uncertain one), or None.

    A labeler holding an unexpired lease in the queue gets that one back instead. With
    wait=False no row lock is waited for (see the module's note): a transaction that already
    holds a task's lock, such as a submit's, leases this way.
    """
    if user.is_paused:
        raise Forbidden("Your account is paused, so no new tasks are handed out. Ask an admin.")
    held = live_lease(db, user, queue_id)
    if held is not None:
        return held
    now = utcnow()
    is_pg = db.get_bind().dialect.name == "postgresql"
    gold = _gold_lease(db, user, queue_id, now, skip_locked=is_pg and not wait)
    if gold is not None:
        return gold
    by_uncertainty = queue_id is not None and orders_by_uncertainty(db, queue_id)
    tried: list[int] = []
    # First pass skips rows other labelers hold; the second waits for them, so a slot that is
    # only momentarily locked is not reported as "no task" (none is lost). Each wait runs in a
    # savepoint, rolled back (its lock released) when the task has no slot left after all.
    for skip_locked in (True, False) if is_pg and wait else (True,) if is_pg else (False,):
        for _ in range(_MAX_ATTEMPTS):
            point = db.begin_nested() if is_pg and not skip_locked else None
            task_id = _candidate(db, user, queue_id, now, tried, skip_locked, by_uncertainty)
            task = _lock_task(db, task_id) if task_id is not None else None
            if task is not None and _open_slot(db, task, now):
                lease = _lease(db, user, task, now)
                if point is not None:
                    point.commit()
                return lease
            if point is not None:
                point.rollback()
            if task_id is None:
                break
            tried.append(task_id)
    return None
