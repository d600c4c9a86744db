"""Export batch directories: reading them, writing them from plain records, and grouping comparisons.

Layout (written by the web app, read by every stage; a missing file is zero rows):
    <batch>/manifest.json   {"id", "content_hash", "filters", "counts", "files": {name: sha256}}
    <batch>/sft.jsonl       {"prompt", "completion", "split", "provenance"}
    <batch>/pairwise.jsonl  {"prompt", "chosen", "rejected", "split", "provenance"}
    <batch>/rankings.jsonl  {"prompt", "completions": [...], "ranks": [...], "split", "provenance"}
    <batch>/prompts.jsonl   {"prompt", "split", "provenance"}
Ranks: 1 = best; equal ranks are a tie, and tied pairs are dropped from reward-model training.
Any row may carry a conversation, "messages": [{"role", "content"}, ...], instead of "prompt"
(an SFT row's messages may end with the assistant turn instead of a "completion");
training.chat.row_prompt reads either, and every stage renders it with the chat template.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.chat import Prompt, check_messages, prompt_key, prompt_text, row_prompt
from training.errors import InputError

FILES = ("sft.jsonl", "pairwise.jsonl", "rankings.jsonl", "prompts.jsonl")
COUNT_KEYS = {
    "sft.jsonl": "sft",
    "pairwise.jsonl": "pairwise",
    "rankings.jsonl": "rankings",
    "prompts.jsonl": "prompts",
}

__all__ = [
    "SPLITS",
    "BatchError",
    "ComparisonGroup",
    "ExportBatch",
    "check_row",
    "group_comparisons",
    "is_edit_pair",
    "read_batch",
    "sha256_file",
    "write_batch",
]


class BatchError(InputError):
    """An export batch, or a row given to write_batch, that the stages can not read as it is; the
    message names the file and line (or row)."""


@dataclass
class ExportBatch:
    """The rows of one export batch, as plain dicts, plus its manifest."""

    path: Path
    manifest: dict[str, Any]
    sft: list[dict[str, Any]] = field(default_factory=list)
    pairwise: list[dict[str, Any]] = field(default_factory=list)
    rankings: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)

    def split(self, kind: str, split: str) -> list[dict[str, Any]]:
        """Rows of one kind (sft, pairwise, rankings, prompts) in one split."""
        rows: list[dict[str, Any]] = getattr(self, kind)
        return [r for r in rows if r.get("split", "train") == split]


@dataclass
class ComparisonGroup:
    """One prompt's (a string or a conversation) K completions and its untied (winner, loser) index pairs."""

    prompt: Prompt
    completions: list[str]
    pairs: list[tuple[int, int]]
    # How much each of its pairs counts in the loss (edit pairs: the stage's edit_pair_weight).
    weight: float = 1.0


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


REQUIRED = {
    "sft.jsonl": ("prompt", "completion"),
    "pairwise.jsonl": ("prompt", "chosen", "rejected"),
    "rankings.jsonl": ("prompt", "completions", "ranks"),
    "prompts.jsonl": ("prompt",),
}


SPLITS = ("train", "valid", "test")


def _text(value: Any) -> Any:
    """A completion given as an object (as `python -m training sample` prints them) becomes its text."""
    return value.get("text", value) if isinstance(value, dict) else value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _list_of(value: Any, ok: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and all(ok(v) for v in value)


def _type_problem(name: str, row: dict[str, Any]) -> str | None:
    """What is wrong with the types of a row's fields (a row of file `name`), or None."""
    if "split" in row and row["split"] not in SPLITS:
        return f'"split" must be one of {", ".join(SPLITS)}, not {row["split"]!r}'
    if "messages" in row:
        try:
            messages = check_messages(row["messages"])
        except ValueError as e:
            return f'"messages": {e}'
        if name == "sft.jsonl" and "completion" not in row and messages[-1]["role"] != "assistant":
            return 'an SFT row needs a "completion" or "messages" ending with an assistant turn'
    elif "prompt" in row and not isinstance(row["prompt"], str):
        return f'"prompt" must be a string, not {_kind(row["prompt"])}'
    for key in ("completion", "chosen", "rejected"):
        if key in row and not isinstance(row[key], str):
            return f'"{key}" must be a string (or an object with a "text"), not {_kind(row[key])}'
    completions: Any = row.get("completions")
    ranks: Any = row.get("ranks")
    if "completions" in row and not _list_of(completions, lambda c: isinstance(c, str)):
        return '"completions" must be a list of strings (or of objects with a "text")'
    if "ranks" in row:
        if not _list_of(ranks, lambda r: isinstance(r, int) and not isinstance(r, bool)):
            return f'"ranks" must be a list of integers (1 = best), not {repr(ranks)[:60]}'
        if isinstance(completions, list) and len(ranks) != len(completions):
            return f'"ranks" has {len(ranks)} entries for {len(completions)} completions'
    return None


def check_row(name: str, row: Any, where: str) -> dict[str, Any]:
    """A row of export file `name` (sft.jsonl, ...) with completions as plain text; a BatchError that
    starts with `where` (a file and line, or a row number) if a field is missing or of the wrong type."""
    if not isinstance(row, dict):
        raise BatchError(f"{where}: expected a JSON object, got {_kind(row)}")
    missing = [k for k in REQUIRED.get(name, ()) if k not in row and "messages" not in row]
    if missing:
        names = ", ".join(repr(k) for k in missing)
        raise BatchError(f"{where}: row has no {names} (its keys: {', '.join(sorted(row))})")
    for key in ("completion", "chosen", "rejected"):
        if key in row:
            row[key] = _text(row[key])
    if isinstance(row.get("completions"), list):
        row["completions"] = [_text(c) for c in row["completions"]]
    problem = _type_problem(name, row)
    if problem:
        raise BatchError(f"{where}: {problem}")
    return row


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BatchError(f"{path}:{n}: malformed JSON ({e.msg})") from e
                rows.append(check_row(path.name, row, f"{path}:{n}"))
    return rows


def read_batch(batch_dir: str | Path) -> ExportBatch:
    """Read an export batch directory, checking file hashes against its manifest when present."""
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        raise FileNotFoundError(f"export batch directory {batch_dir} does not exist")
    if not any((batch_dir / name).exists() for name in FILES):
        raise FileNotFoundError(f"{batch_dir} holds none of {', '.join(FILES)}: not an export batch")
    mpath = batch_dir / "manifest.json"
    manifest: dict[str, Any] = json.loads(mpath.read_text()) if mpath.exists() else {}
    for name, digest in manifest.get("files", {}).items():
        if name in FILES and (batch_dir / name).exists() and sha256_file(batch_dir / name) != digest:
            raise BatchError(f"{batch_dir / name}: sha256 does not match the manifest")
    return ExportBatch(
        path=batch_dir,
        manifest=manifest,
        sft=_read_jsonl(batch_dir / "sft.jsonl"),
        pairwise=_read_jsonl(batch_dir / "pairwise.jsonl"),
        rankings=_read_jsonl(batch_dir / "rankings.jsonl"),
        prompts=_read_jsonl(batch_dir / "prompts.jsonl"),
    )


def write_batch(
    batch_dir: str | Path,
    *,
    sft: list[dict[str, Any]] | None = None,
    pairwise: list[dict[str, Any]] | None = None,
    rankings: list[dict[str, Any]] | None = None,
    prompts: list[dict[str, Any]] | None = None,
    batch_id: int = 0,
    filters: dict[str, Any] | None = None,
) -> Path:
    """Write plain records as an export batch directory (atomically: temp name, then rename)."""
    batch_dir = Path(batch_dir)
    if batch_dir.exists():
        raise FileExistsError(f"{batch_dir} exists; export batches are immutable")
    batch_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{batch_dir.name}.", dir=batch_dir.parent))
    try:
        data = {
            "sft.jsonl": sft or [],
            "pairwise.jsonl": pairwise or [],
            "rankings.jsonl": rankings or [],
            "prompts.jsonl": prompts or [],
        }
        hashes = {}
        for name, rows in data.items():
            with open(tmp / name, "w", encoding="utf-8") as f:
                for i, r in enumerate(rows, 1):
                    row = {"split": "train", "provenance": {}, **r}
                    check_row(name, dict(row), f"{name} row {i}")  # written as given, checked as read
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            hashes[name] = sha256_file(tmp / name)
        content_hash = hashlib.sha256("".join(hashes[n] for n in FILES).encode()).hexdigest()
        manifest = {
            "id": batch_id,
            "content_hash": content_hash,
            "filters": filters or {},
            "counts": {COUNT_KEYS[n]: len(rows) for n, rows in data.items()},
            "files": hashes,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        os.rename(tmp, batch_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return batch_dir


def ranking_pairs(ranks: list[int]) -> list[tuple[int, int]]:
    """(winner, loser) index pairs of one ranking; ranks 1 = best, tied pairs dropped."""
    pairs = []
    for i, j in itertools.combinations(range(len(ranks)), 2):
        if ranks[i] < ranks[j]:
            pairs.append((i, j))
        elif ranks[j] < ranks[i]:
            pairs.append((j, i))
    return pairs


def is_edit_pair(row: dict[str, Any]) -> bool:
    """True for a pairwise row that came from a labeler's edit (edited text chosen over the original)."""
    provenance = row.get("provenance")
    return isinstance(provenance, dict) and bool(provenance.get("from_edit"))


def _ranking_id(row: dict[str, Any]) -> Any:
    provenance = row.get("provenance")
    return provenance.get("ranking_id") if isinstance(provenance, dict) else None


def group_comparisons(
    rankings: list[dict[str, Any]], pairwise: list[dict[str, Any]], edit_weight: float = 1.0
) -> list[ComparisonGroup]:
    """One group per ranking row, plus one group per prompt for its pairwise rows; empty groups dropped.

    Pairs from edits (provenance "from_edit") form their own group per prompt with weight
    `edit_weight`; 0 leaves them out. A pairwise row expanded from a ranking that is also among
    `rankings` (the same provenance "ranking_id", as the app's exports write both) is left out,
    so each comparison is trained on once.
    """
    if edit_weight < 0:
        raise ValueError(f"edit_weight must be >= 0, not {edit_weight}")
    grouped = {_ranking_id(r) for r in rankings} - {None}
    groups = []
    for r in rankings:
        if len(r["completions"]) != len(r["ranks"]):
            text = prompt_text(row_prompt(r))[:40]
            raise BatchError(f"ranking for {text!r}: completions and ranks differ in length")
        pairs = ranking_pairs(list(r["ranks"]))
        if pairs:
            groups.append(ComparisonGroup(row_prompt(r), list(r["completions"]), pairs))
    by_prompt: dict[tuple[str, bool], ComparisonGroup] = {}
    for r in pairwise:
        edit = is_edit_pair(r)
        if (edit and edit_weight == 0) or (not edit and _ranking_id(r) in grouped):
            continue
        prompt = row_prompt(r)
        weight = edit_weight if edit else 1.0
        g = by_prompt.setdefault((prompt_key(prompt), edit), ComparisonGroup(prompt, [], [], weight))
        idx = []
        for text in (r["chosen"], r["rejected"]):
            if text not in g.completions:
                g.completions.append(text)
            idx.append(g.completions.index(text))
        if idx[0] != idx[1]:
            g.pairs.append((idx[0], idx[1]))
    groups.extend(g for g in by_prompt.values() if g.pairs)
    return groups
