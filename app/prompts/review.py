"""Personal-data review: held prompts, and the admin's redact / clear / reject decisions."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.enums import PIIStatus
from app.errors import AppError, Conflict, NotFound
from app.labeling.service import create_tasks
from app.prompts import conversation, pii
from app.prompts.models import PIIRedaction, Prompt, PromptQueue
from app.prompts.rules import RowError


def held_prompts(db: Session, limit: int = 200) -> list[Prompt]:
    """Prompts held for personal-data review, oldest first."""
    return list(
        db.scalars(
            select(Prompt).where(Prompt.pii_status == PIIStatus.held.value).order_by(Prompt.id).limit(limit)
        )
    )


def count_held(db: Session) -> int:
    """How many prompts wait for personal-data review."""
    return (
        db.scalar(select(func.count()).select_from(Prompt).where(Prompt.pii_status == PIIStatus.held.value))
        or 0
    )


def get_held(db: Session, prompt_id: int) -> Prompt:
    """A prompt awaiting review, or a clear error when it was already decided."""
    prompt = db.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound("There is no such prompt.")
    if prompt.pii_status != PIIStatus.held.value:
        raise Conflict(f"This prompt was already reviewed (status: {prompt.pii_status}).")
    return prompt


def highlight(prompt: Prompt) -> list[tuple[str, str | None, int | None]]:
    """The prompt text cut into (text, kind, finding index) pieces for highlighting."""
    pieces: list[tuple[str, str | None, int | None]] = []
    pos = 0
    for i, f in enumerate(sorted(prompt.pii_findings, key=lambda f: int(f["start"]))):
        start, end = int(f["start"]), int(f["end"])
        if start < pos:
            continue
        pieces.append((prompt.text[pos:start], None, None))
        pieces.append((prompt.text[start:end], str(f["kind"]), i))
        pos = end
    pieces.append((prompt.text[pos:], None, None))
    return [p for p in pieces if p[0]]


def _extra_spans(text: str, extra: str) -> list[dict[str, Any]]:
    spans = []
    for needle in {s.strip() for s in extra.splitlines() if s.strip()}:
        start = text.find(needle)
        if start < 0:
            raise AppError(f"The text does not contain {needle!r}; nothing was changed.")
        while start >= 0:
            spans.append({"kind": "redacted", "start": start, "end": start + len(needle)})
            start = text.find(needle, start + len(needle))
    return spans


MAX_EXTRA = 5000


def digest(text: str) -> str:
    """The fingerprint of a previewed text: a release must match what the admin saw."""
    return hashlib.sha256(text.encode()).hexdigest()


def preview_redaction(
    db: Session, prompt_id: int, chosen: list[int], extra: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    """The text that redacting would release, and the spans it replaces; nothing is changed."""
    prompt = get_held(db, prompt_id)
    spans = _spans(prompt, chosen, extra)
    if prompt.messages:
        return conversation.transcript(_redacted_messages(prompt.messages, spans)), spans
    return pii.redact(prompt.text, spans), spans


def _redacted_messages(messages: list[dict[str, str]], spans: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A conversation's messages redacted by transcript spans; a span across turns is a clear error."""
    try:
        return conversation.redact(messages, spans)
    except RowError as exc:
        raise AppError(f"{exc}; nothing was changed.") from None


def _spans(prompt: Prompt, chosen: list[int], extra: str) -> list[dict[str, Any]]:
    if len(extra) > MAX_EXTRA:
        raise AppError(f"The strings to redact are {len(extra)} characters; the limit is {MAX_EXTRA}.")
    ordered = sorted(prompt.pii_findings, key=lambda f: int(f["start"]))
    if any(i < 0 or i >= len(ordered) for i in chosen):
        raise AppError("A chosen finding does not exist.")
    spans = [
        {"kind": ordered[i]["kind"], "start": ordered[i]["start"], "end": ordered[i]["end"]}
        for i in sorted(set(chosen))
    ]
    spans += _extra_spans(prompt.text, extra)
    if not spans:
        raise AppError(
            "Choose at least one finding or give a string to redact (or clear or reject the prompt)."
        )
    return spans


def redact_prompt(
    db: Session, prompt_id: int, admin: User, chosen: list[int], extra: str = "", note: str = "",
    *, confirmed_digest: str,
) -> Prompt:
    """Release the prompt with the chosen findings (and extra strings) replaced by placeholders,
    only when the result is exactly the text the admin previewed and confirmed."""
    text, spans = preview_redaction(db, prompt_id, chosen, extra)
    if not hmac.compare_digest(digest(text), confirmed_digest):
        raise Conflict("The redacted text differs from the preview you confirmed; nothing was released. "
                       "Preview it again.")
    prompt = get_held(db, prompt_id)
    if prompt.messages:
        prompt.messages = _redacted_messages(prompt.messages, spans)
    prompt.text = text
    return _decide(db, prompt, admin, PIIStatus.redacted, "redact", spans, note)


def reject_prompt(db: Session, prompt_id: int, admin: User, note: str = "") -> Prompt:
    """Reject a held prompt: its text is blanked so the personal data is gone; nobody sees it."""
    prompt = get_held(db, prompt_id)
    spans = [{"kind": "all", "start": 0, "end": len(prompt.text)}]
    prompt.text, prompt.messages = "[REJECTED]", None
    return _decide(db, prompt, admin, PIIStatus.rejected, "reject", spans, note)


def clear_prompt(db: Session, prompt_id: int, admin: User, note: str = "") -> Prompt:
    """Mark a held prompt as free of personal data (a false positive); it goes to labeling."""
    prompt = get_held(db, prompt_id)
    return _decide(db, prompt, admin, PIIStatus.clear, "clear", [], note)


def _decide(
    db: Session,
    prompt: Prompt,
    admin: User,
    status: PIIStatus,
    action: str,
    spans: list[dict[str, Any]],
    note: str,
) -> Prompt:
    prompt.pii_status = status.value
    prompt.pii_findings = []
    db.add(PIIRedaction(prompt_id=prompt.id, admin_id=admin.id, action=action, spans=spans, note=note[:2000]))
    db.flush()
    if status is not PIIStatus.rejected and prompt.queue_id is not None:
        queue = db.get(PromptQueue, prompt.queue_id)
        if queue is not None:
            create_tasks(db, queue, [prompt.id])
    return prompt


def screen_text(text: str) -> list[dict[str, Any]]:
    """The personal-data findings of `text`; needs no database, so callers run it before any lock."""
    return [f.as_dict() for f in pii.detect(text)]


def screen_prompt(prompt: Prompt, findings: list[dict[str, Any]] | None = None) -> Prompt:
    """Mark a new prompt held when its findings (computed here unless given) are not empty."""
    if findings is None:
        findings = conversation.screen(prompt.messages) if prompt.messages else screen_text(prompt.text)
    prompt.pii_findings = findings
    prompt.pii_status = (PIIStatus.held if findings else PIIStatus.clear).value
    return prompt


def redactions(db: Session, prompt_id: int) -> list[PIIRedaction]:
    """The review decisions recorded for a prompt."""
    return list(
        db.scalars(select(PIIRedaction).where(PIIRedaction.prompt_id == prompt_id).order_by(PIIRedaction.id))
    )
