"""A submitted ranking, parsed from the form the ranking page posts (with or without JavaScript).

Fields, one set per completion letter `X` as this assignment shows it (A, B, C... in its stored
display order; the page never carries completion ids, so a labeler cannot tell which policy
version wrote what): `tier_X` (1 = best; equal tiers are ties), `likert_X` (1..7), `flags_X`
(repeatable, keys of app.enums.FLAGS), `comment_X`; plus `all_unacceptable` and `comment`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.enums import FLAGS, LIKERT_MAX, LIKERT_MIN

_FIELD = re.compile(r"^(tier|likert|flags|comment)_([A-Z]{1,2})$")
K = TypeVar("K")
_LETTER = re.compile(r"^[A-Z]{1,2}$")
MAX_COMMENT = 5000


@dataclass
class EntryIn:
    """One completion's place (by its letter): tier as sent (None when missing), rating, flags, comment."""

    letter: str
    tier: int | None = None
    likert: int | None = None
    flags: list[str] = field(default_factory=list)
    comment: str = ""


@dataclass
class RankingIn:
    """A whole submission, before it is checked against the task."""

    entries: dict[str, EntryIn] = field(default_factory=dict)
    all_unacceptable: bool = False
    comment: str = ""
    errors: list[str] = field(default_factory=list)
    # An edit of a best completion (queues that allow edits; app/edits): its letter and new text.
    edit_of: str = ""
    edit_text: str = ""


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 6 else None


def parse_ranking_form(form: Mapping[str, Sequence[str]]) -> RankingIn:
    """Read the form into a RankingIn; syntax problems are collected in `.errors`, not raised."""
    out = RankingIn()
    out.all_unacceptable = any(v in {"1", "on", "true"} for v in form.get("all_unacceptable", []))
    out.comment = "\n".join(form.get("comment", []))
    out.edit_of = (form.get("edit_of") or [""])[0].strip()[:8]
    out.edit_text = (form.get("edit_text") or [""])[0]
    for key, values in form.items():
        m = _FIELD.match(key)
        if not m:
            continue
        kind, key = m.group(1), m.group(2)
        entry = out.entries.setdefault(key, EntryIn(key))
        if kind == "flags":
            entry.flags = list(dict.fromkeys(v for v in values if v))
            continue
        if kind == "tier" and len(values) > 1:
            out.errors.append(f"Completion {key} was placed {len(values)} times; place each once.")
        value = values[0] if values else ""
        if kind == "comment":
            entry.comment = value
        elif kind == "tier" and value.strip():
            entry.tier = _int(value)
            if entry.tier is None:
                out.errors.append(f"Completion {key}: the rank {value[:20]!r} is not a whole number.")
        elif kind == "likert" and value.strip():
            entry.likert = _int(value)
            if entry.likert is None:
                out.errors.append(f"Completion {key}: the rating {value[:20]!r} is not a whole number.")
    return out


def check_against(sub: RankingIn, letters: Sequence[str], k: int) -> list[str]:
    """Every problem with `sub` for a task whose completions are shown as `letters`."""
    errors = list(sub.errors)
    unknown = sorted(set(sub.entries) - set(letters))
    if unknown:
        names = ", ".join(unknown[:5])
        errors.append(f"{len(unknown)} ranked completion(s) do not belong to this task ({names}).")
    for letter in letters:
        entry = sub.entries.get(letter)
        if entry is None or entry.tier is None:
            errors.append(f"Completion {letter} has no rank. Place every completion.")
            continue
        if not 1 <= entry.tier <= k:
            errors.append(f"Completion {letter}: rank {entry.tier} is outside 1..{k}.")
        if entry.likert is None:
            errors.append(f"Completion {letter} has no overall rating. Rate it {LIKERT_MIN} to {LIKERT_MAX}.")
        elif not LIKERT_MIN <= entry.likert <= LIKERT_MAX:
            errors.append(
                f"Completion {letter}: rating {entry.likert} is outside {LIKERT_MIN}..{LIKERT_MAX}."
            )
        bad = [f for f in entry.flags if f not in FLAGS]
        if bad:
            names = ", ".join(repr(b[:40]) for b in bad)
            errors.append(f"Completion {letter}: unknown flag(s) {names}.")
        if len(entry.comment) > MAX_COMMENT:
            n = len(entry.comment)
            errors.append(f"Completion {letter}: the comment is {n} characters; the limit is {MAX_COMMENT}.")
    if len(sub.comment) > MAX_COMMENT:
        errors.append(f"The comment is {len(sub.comment)} characters; the limit is {MAX_COMMENT}.")
    return errors


def dense_tiers(tiers: Mapping[K, int]) -> dict[K, int]:
    """Renumber tiers 1..m keeping order and ties (e.g. 1, 1, 4 -> 1, 1, 2)."""
    order = {t: i + 1 for i, t in enumerate(sorted(set(tiers.values())))}
    return {cid: order[t] for cid, t in tiers.items()}


def comparison_pairs(tiers: Mapping[Any, int]) -> int:
    """How many comparison pairs a ranking yields: pairs in different tiers (ties yield none)."""
    values = list(tiers.values())
    n = len(values)
    same = sum(values.count(t) * (values.count(t) - 1) // 2 for t in set(values))
    return n * (n - 1) // 2 - same


def to_draft(sub: RankingIn) -> str:
    """The in-progress ranking as JSON for Assignment.draft_text ("" when nothing was done yet)."""
    entries = {
        key: {"tier": e.tier, "likert": e.likert, "flags": e.flags, "comment": e.comment}
        for key, e in sub.entries.items()
        if e.tier is not None or e.likert is not None or e.flags or e.comment.strip()
    }
    if not entries and not sub.all_unacceptable and not sub.comment.strip() and not sub.edit_text.strip():
        return ""
    draft: dict[str, Any] = {
        "entries": entries, "all_unacceptable": sub.all_unacceptable, "comment": sub.comment
    }
    if sub.edit_of or sub.edit_text:
        draft.update(edit_of=sub.edit_of, edit_text=sub.edit_text)
    return json.dumps(draft)


def from_draft(text: str) -> RankingIn | None:
    """A ranking draft read back (None when there is none or it is unreadable)."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    out = RankingIn(all_unacceptable=bool(data.get("all_unacceptable")), comment=str(data.get("comment", "")),
                    edit_of=str(data.get("edit_of") or "")[:8], edit_text=str(data.get("edit_text") or ""))
    for key, e in (data.get("entries") or {}).items():
        if _LETTER.match(str(key)) and isinstance(e, dict):
            out.entries[key] = EntryIn(
                key, _opt_int(e.get("tier")), _opt_int(e.get("likert")),
                [str(f) for f in e.get("flags") or [] if isinstance(f, str)], str(e.get("comment") or ""),
            )
    return out


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
