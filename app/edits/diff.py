"""A word-level diff of an edit against the completion it fixes, for reviewers (plain pieces, escaped
by the template)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# Words and runs of whitespace are the units, so a diff reads as text, not as characters.
_TOKEN = re.compile(r"\S+|\s+")


@dataclass(frozen=True)
class Piece:
    """A run of text that is the same in both, only in the original (delete) or only in the edit (insert)."""

    op: str  # "equal" | "delete" | "insert"
    text: str


def tokens(text: str) -> list[str]:
    """The text cut into words and runs of whitespace (joined back, the text itself)."""
    return _TOKEN.findall(text)


def word_diff(original: str, edited: str) -> list[Piece]:
    """Pieces that rebuild `original` from equal+delete and `edited` from equal+insert, in order."""
    a, b = tokens(original), tokens(edited)
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(Piece("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(Piece("delete", "".join(a[i1:i2])))
        if j2 > j1:
            pieces.append(Piece("insert", "".join(b[j1:j2])))
    return pieces


def change_summary(pieces: list[Piece]) -> dict[str, int]:
    """Words removed and added (for the review page's one-line summary)."""
    out = {"removed": 0, "added": 0}
    for p in pieces:
        if p.op == "delete":
            out["removed"] += len(p.text.split())
        elif p.op == "insert":
            out["added"] += len(p.text.split())
    return out
