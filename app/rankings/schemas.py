"""A submitted ranking, parsed from the form the ranking page posts (with or without JavaScript).

Fields, one set per completion id `c`: `tier_c` (1 = best; equal tiers are ties),
`likert_c` (1..7), `flags_c` (repeatable, keys of app.enums.FLAGS), `comment_c`;
plus `all_unacceptable` and `comment` for the whole ranking.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.enums import FLAGS, LIKERT_MAX, LIKERT_MIN

_FIELD = re.compile(r"^(tier|likert|flags|comment)_(\d{1,12})$")
MAX_COMMENT = 5000


@dataclass
class EntryIn:
    """One completion's place: tier as sent (None when missing), rating, flags, comment."""

    completion_id: int
    tier: int | None = None
    likert: int | None = None
    flags: list[str] = field(default_factory=list)
    comment: str = ""


@dataclass
class RankingIn:
    """A whole submission, before it is checked against the task."""

    entries: dict[int, EntryIn] = field(default_factory=dict)
    all_unacceptable: bool = False
    comment: str = ""
    errors: list[str] = field(default_factory=list)


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 6 else None


def parse_ranking_form(form: Mapping[str, Sequence[str]]) -> RankingIn:
    """Read the form into a RankingIn; syntax problems are collected in `.errors`, not raised."""
    out = RankingIn()
    out.all_unacceptable = any(v in {"1", "on", "true"} for v in form.get("all_unacceptable", []))
    out.comment = "\n".join(form.get("comment", []))[: MAX_COMMENT + 1]
    for key, values in form.items():
        m = _FIELD.match(key)
        if not m:
            continue
        kind, cid = m.group(1), int(m.group(2))
        entry = out.entries.setdefault(cid, EntryIn(cid))
        if kind == "flags":
            entry.flags = list(dict.fromkeys(v for v in values if v))
            continue
        if kind == "tier" and len(values) > 1:
            out.errors.append(f"completion {cid} was placed {len(values)} times; place each once.")
        value = values[0] if values else ""
        if kind == "comment":
            entry.comment = value
        elif kind == "tier" and value.strip():
            entry.tier = _int(value)
            if entry.tier is None:
                out.errors.append(f"completion {cid}: the rank {value[:20]!r} is not a whole number.")
        elif kind == "likert" and value.strip():
            entry.likert = _int(value)
            if entry.likert is None:
                out.errors.append(f"completion {cid}: the rating {value[:20]!r} is not a whole number.")
    return out


def check_against(sub: RankingIn, labels: Mapping[int, str], k: int) -> list[str]:
    """Every problem with `sub` for a task whose completions are `labels` (id -> letter)."""
    errors = [_name(e, labels) for e in sub.errors]
    unknown = sorted(set(sub.entries) - set(labels))
    if unknown:
        errors.append(f"{len(unknown)} ranked completion(s) do not belong to this task (ids {unknown[:5]}).")
    for cid, letter in labels.items():
        entry = sub.entries.get(cid)
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
            errors.append(f"Completion {letter}: unknown flag(s) {', '.join(repr(b[:40]) for b in bad)}.")
        if len(entry.comment) > MAX_COMMENT:
            errors.append(f"Completion {letter}: the comment is over {MAX_COMMENT} characters.")
    if len(sub.comment) > MAX_COMMENT:
        errors.append(f"The comment is over {MAX_COMMENT} characters.")
    return errors


def _name(message: str, labels: Mapping[int, str]) -> str:
    m = re.match(r"completion (\d+)(.*)", message)
    if m and int(m.group(1)) in labels:
        return f"Completion {labels[int(m.group(1))]}{m.group(2)}"
    return message[:1].upper() + message[1:]


def dense_tiers(tiers: Mapping[int, int]) -> dict[int, int]:
    """Renumber tiers 1..m keeping order and ties (e.g. 1, 1, 4 -> 1, 1, 2)."""
    order = {t: i + 1 for i, t in enumerate(sorted(set(tiers.values())))}
    return {cid: order[t] for cid, t in tiers.items()}


def comparison_pairs(tiers: Mapping[int, int]) -> int:
    """How many comparison pairs a ranking yields: pairs in different tiers (ties yield none)."""
    values = list(tiers.values())
    n = len(values)
    same = sum(values.count(t) * (values.count(t) - 1) // 2 for t in set(values))
    return n * (n - 1) // 2 - same


def to_draft(sub: RankingIn) -> str:
    """The in-progress ranking as JSON for Assignment.draft_text ("" when nothing was done yet)."""
    entries = {
        str(cid): {"tier": e.tier, "likert": e.likert, "flags": e.flags, "comment": e.comment}
        for cid, e in sub.entries.items()
        if e.tier is not None or e.likert is not None or e.flags or e.comment.strip()
    }
    if not entries and not sub.all_unacceptable and not sub.comment.strip():
        return ""
    return json.dumps({"entries": entries, "all_unacceptable": sub.all_unacceptable, "comment": sub.comment})


def from_draft(text: str) -> RankingIn | None:
    """A ranking draft read back (None when there is none or it is unreadable)."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    out = RankingIn(all_unacceptable=bool(data.get("all_unacceptable")), comment=str(data.get("comment", "")))
    for cid, e in (data.get("entries") or {}).items():
        if str(cid).isdigit() and isinstance(e, dict):
            out.entries[int(cid)] = EntryIn(
                int(cid), _opt_int(e.get("tier")), _opt_int(e.get("likert")),
                [str(f) for f in e.get("flags") or [] if isinstance(f, str)], str(e.get("comment") or ""),
            )
    return out


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
