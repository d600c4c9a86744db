"""The InstructGPT prompt-data rules as pure functions: dedup key, split by user id, validation.

instructgpt.md (prompt data): deduplicate by a long shared prefix, at most N prompts per user
id, and train/valid/test split by user id so no user's prompts straddle splits.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from app.enums import Split

_SPACE = re.compile(r"\s+")
# C0/C1 control characters other than tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_USER_ID_CHARS = 128
PROMPT_KEYS = ("prompt", "text")
USER_KEYS = ("user_id", "external_user_id")
MESSAGES_KEY = "messages"


def normalize(text: str) -> str:
    """Case-folded, NFKC-normalised text with whitespace runs collapsed (what 'same prefix' compares)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def dedup_key(text: str, prefix_chars: int) -> str:
    """sha256 of the normalised first `prefix_chars` characters: equal keys are duplicates."""
    return hashlib.sha256(normalize(text)[:prefix_chars].encode()).hexdigest()


def split_for(user_key: str, valid_fraction: float, test_fraction: float) -> Split:
    """Deterministic split of one user (hash of the id), so a user's prompts share one split."""
    bucket = int.from_bytes(hashlib.sha256(b"split:" + user_key.encode()).digest()[:8], "big") / 2**64
    if bucket < test_fraction:
        return Split.test
    if bucket < test_fraction + valid_fraction:
        return Split.valid
    return Split.train


def split_key(external_user_id: str | None, dedup: str) -> str:
    """The id a split is drawn from: the user id, else the prompt itself (an anonymous user of one)."""
    return f"user:{external_user_id}" if external_user_id else f"prompt:{dedup}"


@dataclass
class CleanRow:
    """A validated prompt row."""

    text: str
    external_user_id: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    # A conversation ({"role", "content"} turns ending with the user's); `text` is its transcript.
    messages: list[dict[str, str]] | None = None


class RowError(ValueError):
    """A row that cannot be imported; the message says why."""


def clean_row(raw: Any, max_chars: int) -> CleanRow:
    """Validate one incoming row (a dict with prompt/text or messages, optional user_id and meta)."""
    if not isinstance(raw, dict):
        raise RowError(f"expected an object with a 'prompt' field, got {type(raw).__name__}")
    key = next((k for k in PROMPT_KEYS if k in raw), None)
    if MESSAGES_KEY in raw:
        if key is not None:
            raise RowError(f"a row has either '{key}' or 'messages' (a conversation), not both")
        return _clean_conversation(raw, max_chars)
    if key is None:
        raise RowError("missing the 'prompt' field (or 'messages' for a conversation)")
    text = raw[key]
    if not isinstance(text, str):
        raise RowError(f"'{key}' must be a string, got {type(text).__name__}")
    if _CONTROL.search(text):
        raise RowError(f"'{key}' contains control characters")
    text = text.strip()
    if not text:
        raise RowError(f"'{key}' is empty")
    if len(text) > max_chars:
        raise RowError(f"'{key}' is {len(text)} characters long; the limit is {max_chars}")
    return CleanRow(text=text, external_user_id=_clean_user_id(raw), meta=_clean_meta(raw))


def _clean_meta(raw: dict[str, Any]) -> dict[str, Any]:
    meta = raw.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise RowError("'meta' must be an object")
    return meta


def _clean_conversation(raw: dict[str, Any], max_chars: int) -> CleanRow:
    """A "messages" row; a lone user turn is stored as the plain prompt it is."""
    from app.prompts import conversation

    messages = conversation.clean_messages(raw[MESSAGES_KEY], max_chars)
    user_id, meta = _clean_user_id(raw), _clean_meta(raw)
    if conversation.is_plain(messages):
        return CleanRow(text=messages[0]["content"], external_user_id=user_id, meta=meta)
    return CleanRow(conversation.transcript(messages), user_id, meta, messages)


def _clean_user_id(raw: dict[str, Any]) -> str | None:
    key = next((k for k in USER_KEYS if k in raw), None)
    if key is None:
        return None
    value = raw[key]
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowError(f"'{key}' must be a string or an integer")
    value = str(value).strip()
    if len(value) > MAX_USER_ID_CHARS:
        raise RowError(f"'{key}' is longer than {MAX_USER_ID_CHARS} characters")
    if _CONTROL.search(value):
        raise RowError(f"'{key}' contains control characters")
    return value or None
