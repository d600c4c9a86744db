"""Task stocking, next-task selection under leases, overlap and the never-twice rules.

Public entry points other domains call (names are stable):

* `create_tasks(db, queue, prompt_ids)` - one demonstration task per new prompt (bulk).
* `add_ranking_task(db, queue, prompt, completions)` - a ranking task with its K completions
  (sampling workers stock ranking queues with it).
* `create_write_prompt_tasks(db, queue, hints)` - tasks asking labelers to write prompts.
* `open_task_count(db, queue_id)` - open tasks of a queue (sampling keeps it above low water).
* `next_task(db, user, queue_id)` - lease the next task slot to a labeler (with `live_lease`,
  `available_counts` and `expire_leases`, from app/labeling/leasing.py, which says how slots
  are taken under concurrency).
* One assignment: lock it, keep or renew its lease, save a draft, skip it, count it as done.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.auth.models import User
from app.config import get_settings
from app.db import utcnow
from app.enums import K_MAX, K_MIN, AssignmentStatus, TaskKind, TaskStatus
from app.errors import AppError, Conflict, NotFound
from app.labeling.leasing import NOTHING_NEXT as NOTHING_NEXT
from app.labeling.leasing import available_counts as available_counts
from app.labeling.leasing import expire_leases as expire_leases
from app.labeling.leasing import free_slots
from app.labeling.leasing import live_lease as live_lease
from app.labeling.leasing import next_task as next_task
from app.labeling.leasing import nothing_next as nothing_next
from app.labeling.models import Assignment, Task
from app.prompts.models import Prompt, PromptQueue
from app.rankings.models import Completion

WRITE_PROMPT_HINTS = ("plain", "few_shot", "use_case")

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
        free = task.status == TaskStatus.open.value and free_slots(db, task, utcnow(), user.id) > 0
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
    if task.status != TaskStatus.open.value or free_slots(db, task, now, exclude_user=user.id) <= 0:
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
