"""Edits of a ranking's best completion: checked with the ranking, stored once beside it.

An edit is optional and only on queues with `allow_edits`. It must name a completion the
labeler put in tier 1, differ from it, be within the text limit and carry no personal data
(the text is screened before the request's first query, like a written prompt). A bad edit
refuses the whole submission with every reason, and the page comes back as it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import get_settings
from app.edits.models import CompletionEdit
from app.enums import AssignmentStatus
from app.labeling import service as labeling
from app.labeling.models import Task
from app.prompts.models import PromptQueue
from app.prompts.review import screen_text
from app.rankings import service as rankings
from app.rankings.models import Completion, Ranking
from app.rankings.schemas import RankingIn, check_against

PII_NAMES = {
    "email": "an email address", "phone": "a phone number", "card": "a card number",
    "account": "an account number", "address": "a street address", "name": "a person's name",
    "ip": "an IP address",
}


def requested(sub: RankingIn) -> bool:
    """True when the submission carries an edit (a chosen completion or any edited text)."""
    return bool(sub.edit_of or sub.edit_text.strip())


def screen_edit(text: str) -> list[dict[str, Any]] | None:
    """Personal-data findings of an edit's text (None when there is nothing to screen); no database."""
    text = text.strip()
    if not 0 < len(text) <= get_settings().max_text_chars:
        return None
    return screen_text(text)


def edit_problems(
    sub: RankingIn, allow: bool, originals: Mapping[str, str], findings: list[dict[str, Any]] | None
) -> list[str]:
    """Every reason the edit in `sub` cannot be stored (empty when it can or there is none).

    `originals` maps the letters shown to the completions' texts; `findings` is the screening
    of the stripped edit text.
    """
    if not requested(sub):
        return []
    if not allow:
        return ["This queue does not take edits; clear the edit to submit the ranking."]
    key, text = sub.edit_of, sub.edit_text.strip()
    if not key:
        return ["Choose which best (tier 1) completion you edited."]
    if key not in originals:
        return [f"The edited completion {key[:8]!r} does not belong to this task."]
    tiers = [e.tier for e in sub.entries.values() if e.tier is not None]
    tier = sub.entries[key].tier if key in sub.entries else None
    if tier is None or not tiers or tier != min(tiers):
        return [f"Only a best completion can be edited: put {key} in tier 1 or choose one that is there."]
    limit = get_settings().max_text_chars
    if not text:
        return [f"The edit of {key} is empty. Write the improved completion, or choose no edit."]
    if len(text) > limit:
        return [f"The edit of {key} is {len(text)} characters long; the limit is {limit}."]
    if text == originals[key].strip():
        return [f"The edit of {key} is the completion unchanged. Improve it, or choose no edit."]
    if findings:
        found = ", ".join(sorted({PII_NAMES.get(str(f["kind"]), str(f["kind"])) for f in findings}))
        return [f"The edit seems to contain personal data ({found}). Remove it; edits are exported."]
    return []


def submit(
    db: Session, user: User, assignment_id: int, sub: RankingIn, findings: list[dict[str, Any]] | None
) -> Ranking:
    """Store the ranking and, when it carries one, its edit, in one go; RankingInvalid lists every problem."""
    if not requested(sub):
        return rankings.submit_ranking(db, user, assignment_id, sub)
    a = labeling.lock_assignment(db, user, assignment_id)
    if a.status == AssignmentStatus.submitted.value:  # a double submit: answered as the ranking is
        return rankings.submit_ranking(db, user, assignment_id, sub)
    task = db.get(Task, a.task_id)
    assert task is not None
    queue = db.get(PromptQueue, task.queue_id)
    shown = rankings.shown_completions(db, a)
    originals = {rankings.letter(i): c.text for i, c in enumerate(shown)}
    if findings is None:
        findings = screen_edit(sub.edit_text)
    problems = edit_problems(sub, bool(queue and queue.allow_edits), originals, findings)
    if problems:
        raise rankings.RankingInvalid(check_against(sub, list(originals), len(shown)) + problems)
    ranking = rankings.submit_ranking(db, user, assignment_id, sub)
    original = shown[list(originals).index(sub.edit_of)]
    assert task.prompt_id is not None
    db.add(CompletionEdit(
        ranking_id=ranking.id, task_id=task.id, prompt_id=task.prompt_id, user_id=user.id,
        completion_id=original.id, text=sub.edit_text.strip(),
        guideline_version_id=ranking.guideline_version_id, time_spent_ms=ranking.time_spent_ms,
    ))
    db.flush()
    return ranking


def edit_of_ranking(db: Session, ranking_id: int) -> tuple[CompletionEdit, Completion] | None:
    """A ranking's edit and the completion it fixes, or None."""
    row = db.execute(
        select(CompletionEdit, Completion)
        .join(Completion, Completion.id == CompletionEdit.completion_id)
        .where(CompletionEdit.ranking_id == ranking_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def edited_ranking_ids(db: Session, ranking_ids: list[int]) -> set[int]:
    """Which of these rankings carry an edit (the review list marks them)."""
    if not ranking_ids:
        return set()
    q = select(CompletionEdit.ranking_id).where(CompletionEdit.ranking_id.in_(ranking_ids))
    return set(db.scalars(q))


def review_context(db: Session, ranking_id: int) -> dict[str, Any] | None:
    """What the review page shows of a ranking's edit: both texts, the word diff and its summary."""
    from app.edits.diff import change_summary, word_diff

    found = edit_of_ranking(db, ranking_id)
    if found is None:
        return None
    edit, original = found
    pieces = word_diff(original.text, edit.text)
    return {"edit": edit, "original": original, "pieces": pieces, "summary": change_summary(pieces)}
