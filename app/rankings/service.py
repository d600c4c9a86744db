"""Storing a labeler's ranking of a task's K completions: tiers, ratings, flags, once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.enums import AssignmentStatus, TaskKind
from app.errors import AlreadySubmitted, AppError, Conflict
from app.labeling import service as labeling
from app.labeling.models import Assignment, Task
from app.quality import counters
from app.rankings.models import Completion, Ranking, RankingEntry
from app.rankings.schemas import RankingIn, check_against, dense_tiers, to_draft


class RankingInvalid(AppError):
    """The ranking breaks a rule; `errors` says which. Nothing was stored."""

    status_code = 422

    def __init__(self, errors: list[str]) -> None:
        super().__init__("The ranking was not stored: " + " ".join(errors))
        self.errors = errors


def letter(i: int) -> str:
    """A, B, C... for the i-th completion shown."""
    return chr(ord("A") + i)


def shown_completions(db: Session, a: Assignment) -> list[Completion]:
    """The task's completions in this assignment's display order (new ones appended)."""
    rows = {c.id: c for c in db.scalars(select(Completion).where(Completion.task_id == a.task_id))}
    order = [cid for cid in a.display_order if cid in rows]
    order += sorted(cid for cid in rows if cid not in order)
    return [rows[cid] for cid in order]


def submit_ranking(db: Session, user: User, assignment_id: int, sub: RankingIn) -> Ranking:
    """Validate `sub` against the task and store it once; a double submit returns the first."""
    a = labeling.lock_assignment(db, user, assignment_id)
    task = db.get(Task, a.task_id)
    assert task is not None
    if task.kind != TaskKind.ranking.value:
        raise AppError(f"This is a {task.kind.replace('_', ' ')} task, not a ranking task.")
    shown = shown_completions(db, a)
    ids = {letter(i): c.id for i, c in enumerate(shown)}
    if a.status == AssignmentStatus.submitted.value:
        existing = db.scalar(select(Ranking).where(Ranking.assignment_id == a.id))
        if existing is None:
            raise Conflict("This task was already submitted.")
        if not _same(existing, ids, sub):
            raise AlreadySubmitted("ranking")
        return existing  # the same ranking sent twice (a double click): answered as stored
    errors = check_against(sub, list(ids), len(shown))
    if errors:
        raise RankingInvalid(errors)
    labeling.keep_lease(db, user, a)
    spent = labeling.finish(db, a)
    tiers = dense_tiers({key: sub.entries[key].tier or 0 for key in ids})
    ranking = Ranking(
        assignment_id=a.id, task_id=task.id, user_id=user.id, guideline_version_id=a.guideline_version_id,
        display_order=[c.id for c in shown], all_unacceptable=sub.all_unacceptable,
        comment=sub.comment.strip(), time_spent_ms=spent,
    )
    for key, cid in ids.items():
        e = sub.entries[key]
        ranking.entries.append(RankingEntry(
            completion_id=cid, tier=tiers[key], likert=e.likert, flags=list(e.flags),
            comment=e.comment.strip(),
        ))
    db.add(ranking)
    db.flush()
    counters.ranking_added(db, ranking)
    return ranking


def _same(stored: Ranking, ids: dict[str, int], sub: RankingIn) -> bool:
    """True when `sub` is the ranking already stored (same order, ratings and flags)."""
    if set(sub.entries) != set(ids) or any(e.tier is None for e in sub.entries.values()):
        return False
    sent = dense_tiers({ids[k]: e.tier or 0 for k, e in sub.entries.items()})
    by_id = {e.completion_id: e for e in stored.entries}
    return all(
        cid in by_id and by_id[cid].tier == sent[cid] and by_id[cid].likert == sub.entries[k].likert
        and sorted(by_id[cid].flags) == sorted(sub.entries[k].flags)
        for k, cid in ids.items()
    )


def save_ranking_draft(db: Session, user: User, assignment_id: int, sub: RankingIn) -> Assignment:
    """Autosave the ranking in progress (tiers, ratings, flags, comments) and renew the lease."""
    return labeling.save_draft(db, user, assignment_id, to_draft(sub))
