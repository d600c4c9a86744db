"""The label review: submitted rankings and demonstrations, listed and read in full."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.demonstrations.models import Demonstration
from app.edits import service as edits
from app.errors import AppError, NotFound
from app.labeling.models import Task
from app.prompts.models import Prompt, PromptQueue
from app.quality.service import labelers
from app.rankings.models import Completion, Ranking


@dataclass
class LabelRow:
    """One submitted label in the review list."""

    kind: str
    id: int
    task_id: int
    queue: str
    labeler: str
    created_at: datetime
    time_spent_ms: int
    is_gold: bool


def recent_labels(
    db: Session,
    queue_id: int | None = None,
    user_id: int | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[LabelRow]:
    """The latest submitted rankings and demonstrations, newest first, filtered."""
    rows: list[LabelRow] = []
    for name, model in (("ranking", Ranking), ("demonstration", Demonstration)):
        if kind and kind != name:
            continue
        q = (
            select(
                model.id,
                model.task_id,
                PromptQueue.name,
                User.username,
                model.created_at,
                model.time_spent_ms,
                Task.is_gold,
            )
            .join(Task, Task.id == model.task_id)
            .join(PromptQueue, PromptQueue.id == Task.queue_id)
            .join(User, User.id == model.user_id)
            .order_by(model.id.desc())
            .limit(limit)
        )
        if queue_id:
            q = q.where(Task.queue_id == queue_id)
        if user_id:
            q = q.where(model.user_id == user_id)
        rows += [LabelRow(name, *r) for r in db.execute(q)]
    rows.sort(key=lambda r: r.created_at, reverse=True)
    return rows[:limit]


def ranking_detail(db: Session, ranking_id: int) -> dict[str, Any]:
    """A ranking with its task, prompt, labeler and each completion's tier, Likert, flags and comment."""

    ranking = db.get(Ranking, ranking_id)
    if ranking is None:
        raise NotFound("There is no such ranking.")
    task = db.get(Task, ranking.task_id)
    assert task is not None
    prompt = db.get(Prompt, task.prompt_id) if task.prompt_id else None
    completions = {c.id: c for c in db.scalars(select(Completion).where(Completion.task_id == task.id))}
    entries = sorted(
        ranking.entries,
        key=lambda e: (
            e.tier,
            completions[e.completion_id].position if e.completion_id in completions else 0,
        ),
    )
    return {
        "ranking": ranking,
        "task": task,
        "prompt": prompt,
        "labeler": db.get(User, ranking.user_id),
        "entries": [(e, completions.get(e.completion_id)) for e in entries],
        "edit": edits.review_context(db, ranking.id),
    }


def demonstration_detail(db: Session, demonstration_id: int) -> dict[str, Any]:
    """A demonstration with its task, prompt and labeler."""

    demo = db.get(Demonstration, demonstration_id)
    if demo is None:
        raise NotFound("There is no such demonstration.")
    task = db.get(Task, demo.task_id)
    return {
        "demo": demo,
        "task": task,
        "prompt": db.get(Prompt, demo.prompt_id),
        "labeler": db.get(User, demo.user_id),
    }


def require_kind(kind: str | None) -> str | None:
    """Validate the review list's kind filter."""
    if kind not in (None, "", "ranking", "demonstration"):
        raise AppError("The kind must be 'ranking' or 'demonstration'.")
    return kind or None


def review_list(db: Session, queue_id: int | None, user_id: int | None, kind: str | None) -> dict[str, Any]:
    """The review page: filtered labels plus the choices of the filter form."""
    labels = recent_labels(db, queue_id, user_id, require_kind(kind))
    return {
        "labels": labels,
        "edited": edits.edited_ranking_ids(db, [r.id for r in labels if r.kind == "ranking"]),
        "queues": list(db.scalars(select(PromptQueue).order_by(PromptQueue.name))),
        "labelers": labelers(db),
        "f_queue": queue_id,
        "f_labeler": user_id,
        "f_kind": kind or "",
    }
