"""Conversations as prompts: validation, the stored transcript, dedup key, screening and redaction.

A conversation is a list of {"role": system|user|assistant, "content": str} messages (the
OpenAI/TRL "messages" format) that ends with a user turn: the labeler writes, or ranks, the next
assistant turn. The prompt row keeps the messages in `Prompt.messages` and a plain-text
transcript of them in `Prompt.text`, so every page, search and personal-data review that shows
a prompt's text shows the whole conversation. Personal-data findings and redaction spans are
positions in that transcript, and each lies inside one message's content (each message is
screened on its own). Pure functions; no database.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from app.prompts import pii
from app.prompts.rules import RowError, normalize

ROLES = ("system", "user", "assistant")
LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
SEPARATOR = "\n\n"
MAX_MESSAGES = 200
# C0/C1 control characters other than tab, newline and carriage return (as rules.clean_row refuses).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

Message = dict[str, str]


def clean_messages(raw: Any, max_chars: int) -> list[Message]:
    """Validate an imported conversation; a RowError names the message and what is wrong.

    System turns may only open the conversation; the last turn must be the user's (the next one
    is the assistant's, which labelers write or rank); each content is stripped, non-empty and at
    most `max_chars` characters.
    """
    if not isinstance(raw, list) or not raw:
        raise RowError("'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    if len(raw) > MAX_MESSAGES:
        raise RowError(f"'messages' has {len(raw)} messages; the limit is {MAX_MESSAGES}")
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"message {i + 1}"
        if not isinstance(m, dict):
            raise RowError(f"{where}: expected an object with 'role' and 'content', got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RowError(f"{where}: 'role' must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RowError(f"{where}: 'content' must be a string, got {type(content).__name__}")
        if _CONTROL.search(content):
            raise RowError(f"{where}: 'content' contains control characters")
        content = content.strip()
        if not content:
            raise RowError(f"{where}: 'content' is empty")
        if len(content) > max_chars:
            raise RowError(f"{where}: 'content' is {len(content)} characters long; the limit is {max_chars}")
        if role == "system" and any(o["role"] != "system" for o in out):
            raise RowError(f"{where}: a system message may only open the conversation")
        out.append({"role": str(role), "content": content})
    if out[-1]["role"] != "user":
        raise RowError(
            f"the last message is a {out[-1]['role']} turn; a conversation to label must end with "
            "the user's turn (labelers write the assistant's reply)"
        )
    return out


def is_plain(messages: list[Message]) -> bool:
    """True for a single user turn: such a conversation is stored as a plain prompt."""
    return len(messages) == 1 and messages[0]["role"] == "user"


def content_ranges(messages: list[Message]) -> list[tuple[int, int]]:
    """(start, end) of each message's content in the transcript."""
    ranges, pos = [], 0
    for i, m in enumerate(messages):
        if i:
            pos += len(SEPARATOR)
        pos += len(LABELS[m["role"]]) + 2  # "User: "
        ranges.append((pos, pos + len(m["content"])))
        pos += len(m["content"])
    return ranges


def transcript(messages: list[Message]) -> str:
    """The conversation as plain text ("User: ...", blank line, "Assistant: ..."): `Prompt.text`."""
    return SEPARATOR.join(f"{LABELS[m['role']]}: {m['content']}" for m in messages)


def dedup_key(messages: list[Message]) -> str:
    """sha256 of the whole normalised conversation (roles and contents): equal keys are duplicates.

    Unlike a plain prompt's key (a long shared prefix), the whole conversation counts: many
    conversations share a system prompt and opening turns and differ only at the end.
    """
    norm = [[m["role"], normalize(m["content"])] for m in messages]
    return hashlib.sha256(("conversation:" + json.dumps(norm, ensure_ascii=False)).encode()).hexdigest()


def screen(messages: list[Message]) -> list[dict[str, Any]]:
    """Personal-data findings of every message, as positions in the transcript (with the message index)."""
    findings: list[dict[str, Any]] = []
    for i, ((start, _end), m) in enumerate(zip(content_ranges(messages), messages, strict=True)):
        for f in pii.detect(m["content"]):
            d = f.as_dict()
            at = {"start": int(d["start"]) + start, "end": int(d["end"]) + start, "message": i}
            findings.append({**d, **at})
    return findings


def redact(messages: list[Message], spans: list[dict[str, Any]]) -> list[Message]:
    """The messages with transcript spans replaced by placeholders; a span that does not lie inside
    one message's content is refused (RowError), so role labels and turn boundaries stay intact."""
    ranges = content_ranges(messages)
    local: list[list[dict[str, Any]]] = [[] for _ in messages]
    for span in spans:
        s, e = int(span["start"]), int(span["end"])
        owner = next((i for i, (a, b) in enumerate(ranges) if a <= s and e <= b), None)
        if owner is None:
            raise RowError(f"{span.get('kind', 'a span')!s} at {s}–{e} crosses a turn boundary; "
                           "redact text within one message")
        a = ranges[owner][0]
        local[owner].append({**span, "start": s - a, "end": e - a})
    return [
        {"role": m["role"], "content": pii.redact(m["content"], mine) if mine else m["content"]}
        for m, mine in zip(messages, local, strict=True)
    ]


def prompt_input(text: str, messages: list[Message] | None) -> str | list[Message]:
    """What a policy is conditioned on: the conversation when there is one, else the text."""
    return [dict(m) for m in messages] if messages else text

