"""What a task page shows: the assignment with its task, prompt, guidelines and completions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.enums import AssignmentStatus, TaskKind
from app.errors import NotFound
from app.labeling import service
from app.labeling.models import Assignment, Task
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
from app.rankings.models import Completion
from app.rankings.schemas import RankingIn, from_draft
from app.rankings.service import letter, shown_completions

SKIP_REASONS = (
    "I lack the knowledge to do this well",
    "The prompt is unclear or broken",
    "Offensive or distressing content",
    "The prompt contains personal data",
    "The completions are unreadable or identical",
    "Other",
)

HINTS = {
    "plain": ("A plain prompt", "Write any task you would like an assistant to do, in your own words, "
              "making the tasks varied."),
    "few_shot": ("A few-shot prompt", "Write an instruction followed by several query/response examples "
                 "of it, then a final query left for the assistant to answer."),
    "use_case": ("A use-case prompt", "Write a prompt for a real use case: generation, open or closed "
                 "question answering, brainstorming, chat, rewriting, summarization, classification or "
                 "extraction."),
}


@dataclass
class TaskPage:
    """Everything a task page renders."""

    assignment: Assignment
    task: Task
    queue: PromptQueue
    prompt: Prompt | None
    guideline: GuidelineVersion | None
    completions: list[tuple[str, Completion]]
    lost: str = ""
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    all_unacceptable: bool = False
    comment: str = ""
    edit_of: str = ""
    edit_text: str = ""

    @property
    def finished(self) -> bool:
        """True once submitted or skipped."""
        return self.assignment.status in (AssignmentStatus.submitted.value, AssignmentStatus.skipped.value)

    @property
    def renew_now(self) -> bool:
        """True when the page should renew its lease as soon as it loads (a GET never writes)."""
        return not self.finished and service.needs_hold(self.assignment)

    def tier_of(self, key: str) -> int | None:
        """The tier of the completion shown as `key` (from a draft or a rejected post), or None."""
        return self.state.get(key, {}).get("tier")


def task_page(db: Session, user: User, assignment_id: int, *, renew: bool = True) -> TaskPage:
    """Load the user's assignment for display; reads only (the page renews its lease by POST).

    `renew=False` (a page re-shown after a failed submit) leaves out the lease check.
    """
    row = db.execute(
        select(Assignment, Task, PromptQueue, Prompt, GuidelineVersion)
        .join(Task, Task.id == Assignment.task_id)
        .join(PromptQueue, PromptQueue.id == Task.queue_id)
        .outerjoin(Prompt, Prompt.id == Task.prompt_id)
        .outerjoin(GuidelineVersion, GuidelineVersion.id == Assignment.guideline_version_id)
        .where(Assignment.id == assignment_id)
    ).first()  # one query for what every view needs (was five)
    if row is None or row[0].user_id != user.id:
        raise NotFound("This task is not yours or does not exist.")
    a, task, queue, prompt, guideline = row
    lost = (service.lease_problem(db, user, a, task) or "") if renew else ""
    shown = shown_completions(db, a)
    page = TaskPage(a, task, queue, prompt, guideline, [(letter(i), c) for i, c in enumerate(shown)], lost)
    draft = from_draft(a.draft_text) if task.kind == TaskKind.ranking.value else None
    return with_submission(page, draft) if draft is not None else page


def with_submission(page: TaskPage, sub: RankingIn) -> TaskPage:
    """The page showing a rejected submission as it was sent, so nothing the labeler did is lost."""
    page.state = {
        key: {"tier": e.tier, "likert": e.likert, "flags": e.flags, "comment": e.comment}
        for key, e in sub.entries.items()
    }
    page.all_unacceptable = sub.all_unacceptable
    page.comment = sub.comment
    page.edit_of, page.edit_text = sub.edit_of, sub.edit_text
    return page


def queue_id_of(db: Session, task_id: int) -> int:
    """The queue a task belongs to."""
    task = db.get(Task, task_id)
    assert task is not None
    return task.queue_id


def queue_id_of_assignment(db: Session, assignment_id: int) -> int:
    """The queue of an assignment's task."""
    a = db.get(Assignment, assignment_id)
    assert a is not None
    return queue_id_of(db, a.task_id)
