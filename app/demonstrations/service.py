"""Submitting what labelers write: demonstrations (answers, for SFT) and new prompts.

Where written prompts go: a write-prompt task's prompt joins the write-prompt queue's own pool
(`Prompt.queue_id` = that queue) with `source="labeler"`, `author_id` set and
`pii_status="unchecked"`, so it passes the same personal-data review as imported prompts
before an admin routes it on; its author is never served it (app.labeling.service).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import get_settings
from app.demonstrations.models import Demonstration
from app.enums import AssignmentStatus, PIIStatus, TaskKind
from app.errors import AlreadySubmitted, AppError, Conflict
from app.labeling import service as labeling
from app.labeling.models import Assignment, Task
from app.prompts.models import Prompt
from app.prompts.review import screen_prompt, screen_text
from app.quality import counters


class TextInvalid(AppError):
    """The submitted text is empty or too long; nothing was stored."""

    status_code = 422


def check_text(text: str, what: str) -> str:
    """The text stripped of surrounding blanks, or TextInvalid with what is wrong."""
    text = text.strip()
    limit = get_settings().max_text_chars
    if not text:
        raise TextInvalid(f"The {what} is empty. Write it before submitting.")
    if len(text) > limit:
        raise TextInvalid(f"The {what} is {len(text)} characters long; the limit is {limit}.")
    return text


def _task_of_kind(db: Session, a: Assignment, kind: TaskKind) -> Task:
    task = db.get(Task, a.task_id)
    assert task is not None
    if task.kind != kind.value:
        have, want = task.kind.replace('_', ' '), kind.value.replace('_', ' ')
        raise AppError(f"This is a {have} task, not a {want} task.")
    return task


def submit_demonstration(db: Session, user: User, assignment_id: int, text: str) -> Demonstration:
    """Store the labeler's answer once (a double submit returns the first) and count the label."""
    a = labeling.lock_assignment(db, user, assignment_id)
    task = _task_of_kind(db, a, TaskKind.demonstration)
    if a.status == AssignmentStatus.submitted.value:
        existing = db.scalar(select(Demonstration).where(Demonstration.assignment_id == a.id))
        if existing is None:
            raise Conflict("This task was already submitted.")
        if existing.text != text.strip():
            raise AlreadySubmitted("demonstration")
        return existing
    text = check_text(text, "demonstration")
    labeling.keep_lease(db, user, a)
    spent = labeling.finish(db, a)
    assert task.prompt_id is not None
    demo = Demonstration(
        assignment_id=a.id, task_id=task.id, prompt_id=task.prompt_id, user_id=user.id, text=text,
        guideline_version_id=a.guideline_version_id, time_spent_ms=spent,
    )
    a.draft_text = text
    db.add(demo)
    db.flush()
    counters.label_added(db, task.queue_id, user.id)
    return demo


def submit_written_prompt(
    db: Session, user: User, assignment_id: int, text: str, findings: list[dict[str, Any]] | None = None
) -> Prompt:
    """Store a labeler-written prompt (source "labeler", author set) once; see the module doc.

    `findings` are the personal-data findings of the stripped text when the caller screened it
    before the request touched the database; otherwise screening still runs before the row lock.
    """
    if findings is None and 0 < len(text.strip()) <= get_settings().max_text_chars:
        findings = screen_text(text.strip())
    a = labeling.lock_assignment(db, user, assignment_id)
    task = _task_of_kind(db, a, TaskKind.write_prompt)
    if a.status == AssignmentStatus.submitted.value:
        existing = db.scalars(
            select(Prompt).where(Prompt.author_id == user.id, Prompt.source == "labeler")
            .order_by(Prompt.id.desc())
        )
        for p in existing:
            if p.meta.get("assignment_id") == a.id:
                if p.text != text.strip():
                    raise AlreadySubmitted("prompt")
                return p
        raise Conflict("This task was already submitted.")
    text = check_text(text, "prompt")
    labeling.keep_lease(db, user, a)
    spent = labeling.finish(db, a)
    prompt = Prompt(
        queue_id=task.queue_id, text=text, source="labeler", author_id=user.id,
        pii_status=PIIStatus.unchecked.value,
        meta={"hint": task.hint, "task_id": task.id, "assignment_id": a.id,
              "guideline_version_id": a.guideline_version_id, "time_spent_ms": spent},
    )
    screen_prompt(prompt, findings)  # personal data is held for admin review like any imported prompt
    a.draft_text = text
    db.add(prompt)
    db.flush()
    return prompt
