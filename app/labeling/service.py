"""Task stocking, next-task selection under leases, overlap and the never-twice rules.

Public entry points other domains call (names are stable):

* `create_tasks(db, queue, prompt_ids)` - one demonstration task per new prompt (bulk).
* `add_ranking_task(db, queue, prompt, completions)` - a ranking task with its K completions
  (sampling workers stock ranking queues with it).
* `create_write_prompt_tasks(db, queue, hints)` - tasks asking labelers to write prompts.
* `open_task_count(db, queue_id)` - open tasks of a queue (sampling keeps it above low water).
* `next_task(db, user, queue_id)` - lease the next task slot to a labeler.

Concurrency: a slot is taken only while holding the task row's lock. On PostgreSQL the
candidate is locked with `SELECT ... FOR UPDATE SKIP LOCKED` (other labelers move on to the
next task instead of waiting), then the free slots are recounted in a fresh statement, which
sees every lease committed before the lock was granted. On SQLite every transaction starts
with BEGIN IMMEDIATE (app/db.py), so writers are serialized and the same count is exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, exists, func, insert, not_, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.active.service import orders_by_uncertainty
from app.auth.models import User
from app.config import get_settings
from app.db import utcnow
from app.enums import K_MAX, K_MIN, AssignmentStatus, PIIStatus, TaskKind, TaskStatus
from app.errors import AppError, Conflict, Forbidden, NotFound
from app.labeling.models import Assignment, Task
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
from app.rankings.models import Completion

SERVABLE_PII = (PIIStatus.clear.value, PIIStatus.redacted.value)
WRITE_PROMPT_HINTS = ("plain", "few_shot", "use_case")
# Rows locked per attempt while looking for a slot; each is rechecked after its lock.
_MAX_ATTEMPTS = 50

MAX_SKIP_REASON = 1000


# ---------------------------------------------------------------- stocking queues


def create_tasks(db: Session, queue: PromptQueue, prompt_ids: Sequence[int]) -> int:
    """One demonstration task per prompt not yet in the queue (bulk insert); 0 for other kinds.

    Ranking tasks come from sampling with their completions (add_ranking_task); write-prompt
    tasks from create_write_prompt_tasks.
    """
    if queue.kind != TaskKind.demonstration.value or not prompt_ids:
        return 0
    have = set(
        db.scalars(select(Task.prompt_id).where(Task.queue_id == queue.id, Task.prompt_id.in_(prompt_ids)))
    )
    rows = [
        {
            "queue_id": queue.id,
            "kind": queue.kind,
            "prompt_id": pid,
            "overlap": queue.overlap,
            "status": TaskStatus.open.value,
        }
        for pid in dict.fromkeys(prompt_ids)
        if pid not in have
    ]
    if rows:
        db.execute(insert(Task), rows)
    return len(rows)


def add_ranking_task(
    db: Session, queue: PromptQueue, prompt: Prompt, completions: Sequence[Completion]
) -> Task:
    """A ranking task for `prompt` holding `completions` (unsaved Completion rows), K = len."""
    if queue.kind != TaskKind.ranking.value:
        raise AppError(f"Queue {queue.name!r} is not a ranking queue.")
    if not K_MIN <= len(completions) <= K_MAX:
        raise AppError(f"A ranking task needs {K_MIN} to {K_MAX} completions, not {len(completions)}.")
    task = Task(queue_id=queue.id, kind=queue.kind, prompt_id=prompt.id, overlap=queue.overlap)
    db.add(task)
    db.flush()
    for pos, completion in enumerate(completions):
        completion.task_id = task.id
        completion.prompt_id = prompt.id
        completion.position = pos
        db.add(completion)
    db.flush()
    return task


def create_write_prompt_tasks(db: Session, queue: PromptQueue, hints: Sequence[str]) -> list[Task]:
    """Tasks asking labelers to write a prompt of each hint kind (plain, few_shot, use_case)."""
    if queue.kind != TaskKind.write_prompt.value:
        raise AppError(f"Queue {queue.name!r} is not a write-prompt queue.")
    unknown = sorted(set(hints) - set(WRITE_PROMPT_HINTS))
    if unknown:
        raise AppError(f"Unknown prompt kinds {unknown}; use {', '.join(WRITE_PROMPT_HINTS)}.")
    tasks = [Task(queue_id=queue.id, kind=queue.kind, hint=h, overlap=queue.overlap) for h in hints]
    db.add_all(tasks)
    db.flush()
    return tasks


def open_task_count(db: Session, queue_id: int) -> int:
    """How many tasks of the queue still want labels (status open)."""
    return int(
        db.scalar(
            select(func.count(Task.id)).where(Task.queue_id == queue_id, Task.status == TaskStatus.open.value)
        )
        or 0
    )


# ---------------------------------------------------------------- eligibility


def _live(now: datetime) -> ColumnElement[bool]:
    return and_(Assignment.status == AssignmentStatus.leased.value, Assignment.lease_expires_at > now)


def _slots_taken(now: datetime) -> ColumnElement[int]:
    """Correlated count of a task's unexpired leases (submitted labels are in done_count)."""
    live = select(func.count(Assignment.id)).where(Assignment.task_id == Task.id, _live(now))
    return live.scalar_subquery()


def _eligible(user: User, now: datetime) -> list[ColumnElement[bool]]:
    """Conditions for a task `user` may be served now (slot count from this statement's snapshot)."""
    blocked = exists().where(
        Assignment.task_id == Task.id,
        Assignment.user_id == user.id,
        or_(
            Assignment.status.in_([AssignmentStatus.submitted.value, AssignmentStatus.skipped.value]),
            _live(now),
        ),
    )
    servable_prompt = or_(
        and_(Task.prompt_id.is_(None), Task.kind == TaskKind.write_prompt.value),
        exists().where(
            Prompt.id == Task.prompt_id,
            Prompt.pii_status.in_(SERVABLE_PII),
            or_(Prompt.author_id.is_(None), Prompt.author_id != user.id),
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


def available_counts(db: Session, user: User) -> dict[int, int]:
    """Per queue id: how many tasks `user` could be served right now."""
    now = utcnow()
    rows = db.execute(
        select(Task.queue_id, func.count(Task.id))
        .join(PromptQueue, PromptQueue.id == Task.queue_id)
        .where(*_eligible(user, now))
        .group_by(Task.queue_id)
    ).all()
    return {int(q): int(n) for q, n in rows}


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


def _lock_task(db: Session, task_id: int) -> Task | None:
    """Lock one task row (waits for a concurrent holder) and reload it."""
    return db.scalars(
        select(Task).where(Task.id == task_id).with_for_update().execution_options(populate_existing=True)
    ).first()


def _free_slots(db: Session, task: Task, now: datetime, exclude_user: int | None = None) -> int:
    """Slots left on a locked task, counted in a fresh statement (sees all committed leases)."""
    stmt = select(func.count(Assignment.id)).where(Assignment.task_id == task.id, _live(now))
    if exclude_user is not None:
        stmt = stmt.where(Assignment.user_id != exclude_user)
    return task.overlap - task.done_count - int(db.scalar(stmt) or 0)


def _candidate(
    db: Session, user: User, queue_id: int | None, now: datetime, skip: list[int], skip_locked: bool,
    by_uncertainty: bool = False,
) -> int | None:
    stmt = select(Task.id).join(PromptQueue, PromptQueue.id == Task.queue_id).where(*_eligible(user, now))
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


def _gold_lease(db: Session, user: User, queue_id: int | None, now: datetime) -> Assignment | None:
    """At each queue's gold rate, lease a gold item this labeler has not had (quality control)."""
    from app.quality.service import pick_gold_task

    q = select(PromptQueue).where(PromptQueue.gold_rate > 0, PromptQueue.is_paused.is_(False))
    if queue_id is not None:
        q = q.where(PromptQueue.id == queue_id)
    for queue in db.scalars(q.order_by(PromptQueue.priority.desc())):
        task = pick_gold_task(db, queue, user)
        locked = _lock_task(db, task.id) if task is not None else None
        if locked is not None and locked.status != TaskStatus.retired.value:
            return _lease(db, user, locked, now)
    return None


def next_task(db: Session, user: User, queue_id: int | None = None) -> Assignment | None:
    """Lease the next task slot for `user` (highest queue priority, then oldest task or, in a queue
    ordered by uncertainty, the reward model's most uncertain one), or None.

    A labeler holding an unexpired lease in the queue gets that one back instead.
    """
    if user.is_paused:
        raise Forbidden("Your account is paused, so no new tasks are handed out. Ask an admin.")
    held = live_lease(db, user, queue_id)
    if held is not None:
        return held
    now = utcnow()
    gold = _gold_lease(db, user, queue_id, now)
    if gold is not None:
        return gold
    is_pg = db.get_bind().dialect.name == "postgresql"
    by_uncertainty = queue_id is not None and orders_by_uncertainty(db, queue_id)
    tried: list[int] = []
    # First pass skips rows other labelers hold; the second waits for them, so a slot that
    # is only momentarily locked is not reported as "no task" (none is lost).
    for skip_locked in (True, False) if is_pg else (False,):
        for _ in range(_MAX_ATTEMPTS):
            task_id = _candidate(db, user, queue_id, now, tried, skip_locked, by_uncertainty)
            if task_id is None:
                break
            task = _lock_task(db, task_id)
            if task is not None and task.status == TaskStatus.open.value and _free_slots(db, task, now) > 0:
                return _lease(db, user, task, now)
            tried.append(task_id)
    return None


# ---------------------------------------------------------------- one assignment


def assignment_for(db: Session, user: User, assignment_id: int) -> Assignment:
    """The user's own assignment, or NotFound (other labelers' work is not visible)."""
    a = db.get(Assignment, assignment_id)
    if a is None or a.user_id != user.id:
        raise NotFound("This task is not yours or does not exist.")
    return a


def lease_is_live(a: Assignment, now: datetime | None = None) -> bool:
    """True while the assignment is leased and unexpired."""
    now = now or utcnow()
    return a.status == AssignmentStatus.leased.value and _aware(a.lease_expires_at) > now


def _aware(at: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    from datetime import UTC

    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


LOST_LEASE = (
    "Your lease on this task expired and the slot went to another labeler, so this was not stored. "
    "Copy anything you want to keep, then take the next task."
)


PAUSED_LABELER = (
    "Your account is paused, so nothing more is stored for you. Copy anything you want to keep "
    "and ask an admin."
)
PAUSED_QUEUE = (
    "This queue is paused, so nothing more is stored in it for now. Copy anything you want to keep."
)


def pause_problem(db: Session, user: User, task: Task) -> str | None:
    """Why `user` may not use a lease on `task` now (labeler or queue paused), or None."""
    if user.is_paused:
        return PAUSED_LABELER
    queue = db.get(PromptQueue, task.queue_id)
    return PAUSED_QUEUE if queue is not None and queue.is_paused else None


def lease_problem(db: Session, user: User, a: Assignment, task: Task) -> str | None:
    """Read-only: why writing to `a` now would fail (paused, or the expired slot is taken), or None."""
    if a.status in (AssignmentStatus.submitted.value, AssignmentStatus.skipped.value):
        return None
    problem = pause_problem(db, user, task)
    if problem is None and not lease_is_live(a):
        free = task.status == TaskStatus.open.value and _free_slots(db, task, utcnow(), user.id) > 0
        problem = None if free else LOST_LEASE
    return problem


def lock_assignment(db: Session, user: User, assignment_id: int) -> Assignment:
    """The user's assignment, re-read under its task's row lock (serializes submits of one task).

    One statement locks the task row and re-reads both rows (was three: read, lock, refresh).
    The assignment row is locked too: after waiting, PostgreSQL re-reads only the rows it locks,
    so a status that a concurrent submit or skip committed meanwhile is seen, not the old one.
    """
    stmt = (
        select(Assignment, Task)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.id == assignment_id)
        .with_for_update(of=(Task, Assignment))
        .execution_options(populate_existing=True)
    )
    row = db.execute(stmt).first()
    if row is None or row[0].user_id != user.id:
        raise NotFound("This task is not yours or does not exist.")
    a, task = row
    # Keep the locked row reachable from the assignment, so later lookups of it in this
    # request come from the identity map instead of another query.
    set_committed_value(a, "task", task)
    return a


def needs_hold(a: Assignment, now: datetime | None = None) -> bool:
    """True when showing the task should lock and renew it: not live, or past half its lease.

    A page view of a freshly leased task (the common case) then costs no lock and no write;
    the page renews the lease itself while it stays open.
    """
    now = now or utcnow()
    half = timedelta(seconds=get_settings().lease_seconds / 2)
    return not lease_is_live(a, now) or _aware(a.lease_expires_at) - now < half


def hold(db: Session, user: User, assignment_id: int) -> Assignment:
    """Lock the task and make sure `user` may still write to this assignment (see keep_lease)."""
    return keep_lease(db, user, lock_assignment(db, user, assignment_id))


def keep_lease(db: Session, user: User, a: Assignment) -> Assignment:
    """On an assignment locked by lock_assignment: make sure `user` may still write to it.

    A lease that expired is revived when its slot is still free; otherwise Conflict.
    Submitted or skipped assignments raise Conflict too (callers handle double submits first),
    and so does a paused labeler or queue: pausing stops leases already handed out.
    """
    task = db.get(Task, a.task_id)
    assert task is not None
    now = utcnow()
    if a.status == AssignmentStatus.submitted.value:
        raise Conflict("This task was already submitted.")
    if a.status == AssignmentStatus.skipped.value:
        raise Conflict("You skipped this task; it will not be served to you again.")
    paused = pause_problem(db, user, task)
    if paused is not None:
        raise Conflict(paused)
    if lease_is_live(a, now):
        a.lease_expires_at = now + timedelta(seconds=get_settings().lease_seconds)
        return a
    if task.status != TaskStatus.open.value or _free_slots(db, task, now, exclude_user=user.id) <= 0:
        if a.status == AssignmentStatus.leased.value:
            a.status = AssignmentStatus.expired.value
        raise Conflict(LOST_LEASE)
    a.status = AssignmentStatus.leased.value
    a.lease_expires_at = now + timedelta(seconds=get_settings().lease_seconds)
    db.flush()
    return a


def renew(db: Session, user: User, assignment_id: int) -> Assignment:
    """Extend the lease while the page is open (Conflict when the slot was lost)."""
    a = hold(db, user, assignment_id)
    db.flush()
    return a


def save_draft(db: Session, user: User, assignment_id: int, text: str) -> Assignment:
    """Store the text being written on the server and renew the lease."""
    limit = get_settings().max_text_chars
    if len(text) > limit:
        raise AppError(f"The text is {len(text)} characters long; the limit is {limit}. Draft not saved.")
    a = hold(db, user, assignment_id)
    a.draft_text = text
    a.draft_saved_at = utcnow()
    db.flush()
    return a


def skip(db: Session, user: User, assignment_id: int, reason: str, *, discard_draft: bool) -> Assignment:
    """Give the task back with a reason; it is never served to this labeler again."""
    reason = reason.strip()
    if not reason:
        raise AppError("Say why you skip this task (pick a reason).", status_code=422)
    if len(reason) > MAX_SKIP_REASON:
        raise AppError(f"The reason with its details is {len(reason)} characters; the limit is "
                       f"{MAX_SKIP_REASON}. Nothing was skipped.", status_code=422)
    # Lock first, then read the status: a submit in another tab that committed while this
    # request waited for the lock is seen, never overwritten with "skipped".
    a = lock_assignment(db, user, assignment_id)
    if a.status == AssignmentStatus.skipped.value:
        return a
    if a.status == AssignmentStatus.submitted.value:
        raise Conflict("This task was already submitted; it cannot be skipped.")
    if a.draft_text.strip() and not discard_draft:
        raise AppError(
            f"You have a saved draft of {len(a.draft_text)} characters. "
            "Tick 'Discard my draft' to skip anyway.",
            status_code=422,
        )
    a.status = AssignmentStatus.skipped.value
    a.skip_reason = reason
    a.finished_at = utcnow()
    db.flush()
    return a


def finish(db: Session, a: Assignment) -> int:
    """Mark a held assignment submitted and count the label on its (locked) task; time spent in ms."""
    now = utcnow()
    task = db.get(Task, a.task_id)
    assert task is not None
    spent = max(0, int((now - _aware(a.leased_at)).total_seconds() * 1000))
    a.status = AssignmentStatus.submitted.value
    a.finished_at = now
    a.time_spent_ms = spent
    a.lease_expires_at = now
    task.done_count = task.done_count + 1
    if task.done_count >= task.overlap:
        task.status = TaskStatus.done.value
        task.completed_at = now
    db.flush()
    return spent
