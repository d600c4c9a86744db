"""Export batches: immutable, content-hashed snapshots of the labels that training reads.

Layout (the contract with training/):
  <exports_dir>/<batch id>/manifest.json, sft|pairwise|rankings|prompts .jsonl and .parquet
Rows come in a deterministic order; the content hash covers the data files and the canonical
filters (never the id or the time), so the same data and filters give the same hash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import Settings, get_settings
from app.db import utcnow
from app.demonstrations.models import Demonstration
from app.durable import durable_replace
from app.enums import PIIStatus
from app.errors import AppError, NotFound
from app.exports.formats import DATASETS, DatasetWriter
from app.exports.models import ExportBatch
from app.exports.schemas import ExportFilters, parse_filters
from app.labeling.models import Task
from app.prompts.models import GuidelineVersion, Prompt
from app.rankings.models import Completion, Ranking, RankingEntry

EXPORTABLE = (PIIStatus.clear.value, PIIStatus.redacted.value)
FORMATS = ["jsonl", "parquet"]
BATCH = 500
Progress = Callable[[float], None]


def _window(filters: ExportFilters) -> tuple[datetime | None, datetime | None]:
    start = datetime.combine(filters.since, time.min, UTC) if filters.since else None
    end = datetime.combine(filters.until + timedelta(days=1), time.min, UTC) if filters.until else None
    return start, end


def _label_query(model: type[Demonstration] | type[Ranking] | type[Any], filters: ExportFilters) -> Select:
    q = (
        select(model, Prompt, User.username, Task.queue_id, GuidelineVersion.version)
        .join(Task, Task.id == model.task_id)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .join(User, User.id == model.user_id)
        .outerjoin(GuidelineVersion, GuidelineVersion.id == model.guideline_version_id)
        .where(Prompt.pii_status.in_(EXPORTABLE))
        .order_by(model.id)
    )
    start, end = _window(filters)
    if filters.queues:
        q = q.where(Task.queue_id.in_(filters.queues))
    if start:
        q = q.where(model.created_at >= start)
    if end:
        q = q.where(model.created_at < end)
    if filters.labelers:
        q = q.where(model.user_id.in_(filters.labelers))
    if filters.splits:
        q = q.where(Prompt.split.in_([s.value for s in filters.splits]))
    return q


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _common(
    label: Demonstration | Ranking, prompt: Prompt, username: str, queue_id: int, version: int | None
) -> dict[str, Any]:
    return {
        "labeler": username,
        "labeler_id": label.user_id,
        "prompt_id": prompt.id,
        "task_id": label.task_id,
        "queue_id": queue_id,
        "guideline_version": version,
        "created_at": _iso(label.created_at),
    }


def prompt_fields(prompt: Prompt) -> dict[str, Any]:
    """A row's prompt in the contract layout: {"prompt": text}, or {"messages": [...]} for a conversation."""
    if prompt.messages:
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in prompt.messages]}
    return {"prompt": prompt.text}


def sft_fields(prompt: Prompt, completion: str) -> dict[str, Any]:
    """An SFT row's prompt and completion; a conversation's row is its messages ending with the
    demonstration as the assistant turn (TRL's conversational format, as training.chat reads it)."""
    fields = prompt_fields(prompt)
    if "messages" in fields:
        return {"messages": [*fields["messages"], {"role": "assistant", "content": completion}]}
    return {**fields, "completion": completion}


def sft_rows(db: Session, filters: ExportFilters) -> Iterator[dict[str, Any]]:
    """SFT rows: prompt, completion (the demonstration), split, provenance; by demonstration id."""
    for demo, prompt, username, queue_id, version in db.execute(
        _label_query(Demonstration, filters).execution_options(yield_per=BATCH)
    ):
        yield {
            **sft_fields(prompt, demo.text),
            "split": prompt.split,
            "provenance": {
                "demonstration_id": demo.id,
                **_common(demo, prompt, username, queue_id, version),
                "time_spent_ms": demo.time_spent_ms,
                "edit_id": None,
            },
        }


def _dense(tiers: list[int]) -> list[int]:
    """Tiers renumbered 1..n keeping ties (tiers left gappy by dropped completions close up)."""
    order = {t: i + 1 for i, t in enumerate(sorted(set(tiers)))}
    return [order[t] for t in tiers]


def _ranking_batches(db: Session, filters: ExportFilters) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in db.execute(_label_query(Ranking, filters).execution_options(yield_per=BATCH)):
        chunk.append(tuple(row))
        if len(chunk) >= BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ranking_groups(
    db: Session, filters: ExportFilters
) -> Iterator[tuple[dict[str, Any], list[Any], list[Any]]]:
    """(provenance base, completions in position order, their entries) per ranking, by ranking id."""
    excluded = set(filters.exclude_flags)
    for chunk in _ranking_batches(db, filters):
        ids = [r[0].id for r in chunk]
        entries: dict[int, list[RankingEntry]] = {}
        for e in db.scalars(select(RankingEntry).where(RankingEntry.ranking_id.in_(ids))):
            entries.setdefault(e.ranking_id, []).append(e)
        comp_ids = [e.completion_id for es in entries.values() for e in es]
        completions = {c.id: c for c in db.scalars(select(Completion).where(Completion.id.in_(comp_ids)))}
        for ranking, prompt, username, queue_id, version in chunk:
            kept = [
                e
                for e in entries.get(ranking.id, [])
                if e.completion_id in completions and not excluded.intersection(e.flags or [])
            ]
            kept.sort(key=lambda e: (completions[e.completion_id].position, e.completion_id))
            if len(kept) < 2:
                continue
            base = {"ranking_id": ranking.id, **_common(ranking, prompt, username, queue_id, version)}
            yield (
                {"base": base, "prompt": prompt.text, "fields": prompt_fields(prompt), "split": prompt.split,
                 "ranking": ranking},
                [completions[e.completion_id] for e in kept],
                kept,
            )


def write_rankings(
    db: Session, filters: ExportFilters, rankings: DatasetWriter, pairwise: DatasetWriter
) -> None:
    """Grouped rankings and their expanded pairs (ties dropped), in one pass."""
    for head, comps, entries in ranking_groups(db, filters):
        ranks = _dense([e.tier for e in entries])
        base = head["base"]
        rankings.write(
            {
                **head["fields"],
                "completions": [c.text for c in comps],
                "ranks": ranks,
                "split": head["split"],
                "provenance": {
                    **base,
                    "completion_ids": [c.id for c in comps],
                    "policy_versions": [c.policy_version_id for c in comps],
                    "likert": [e.likert for e in entries],
                    "flags": [sorted(e.flags or []) for e in entries],
                    "all_unacceptable": head["ranking"].all_unacceptable,
                    "time_spent_ms": head["ranking"].time_spent_ms,
                },
            }
        )
        for i, j in combinations(range(len(comps)), 2):
            if ranks[i] == ranks[j]:
                continue
            win, lose = (i, j) if ranks[i] < ranks[j] else (j, i)
            pairwise.write(
                {
                    **head["fields"],
                    "chosen": comps[win].text,
                    "rejected": comps[lose].text,
                    "split": head["split"],
                    "provenance": {
                        **base,
                        "chosen_completion_id": comps[win].id,
                        "rejected_completion_id": comps[lose].id,
                        "chosen_policy_version": comps[win].policy_version_id,
                        "rejected_policy_version": comps[lose].policy_version_id,
                        "chosen_rank": ranks[win],
                        "rejected_rank": ranks[lose],
                        "from_edit": False,
                        "edit_id": None,
                    },
                }
            )


def write_edits(db: Session, filters: ExportFilters, sft: DatasetWriter, pairwise: DatasetWriter) -> None:
    """Labelers' edits of a best completion: an SFT row each, and a pair (edit chosen, original rejected)."""
    from app.edits.export import edit_rows

    for sft_row, pair_row in edit_rows(db, filters, _label_query, _common):
        sft.write(sft_row)
        pairwise.write(pair_row)


def prompt_rows(db: Session, filters: ExportFilters) -> Iterator[dict[str, Any]]:
    """PPO prompts: every exportable prompt of the chosen queues and splits, by id."""
    q = select(Prompt).where(Prompt.pii_status.in_(EXPORTABLE)).order_by(Prompt.id)
    start, end = _window(filters)
    if filters.queues:
        q = q.where(Prompt.queue_id.in_(filters.queues))
    if filters.splits:
        q = q.where(Prompt.split.in_([s.value for s in filters.splits]))
    if start:
        q = q.where(Prompt.created_at >= start)
    if end:
        q = q.where(Prompt.created_at < end)
    for prompt in db.scalars(q.execution_options(yield_per=BATCH)):
        yield {
            **prompt_fields(prompt),
            "split": prompt.split,
            "provenance": {
                "prompt_id": prompt.id,
                "queue_id": prompt.queue_id,
                "source": prompt.source,
                "pii_status": prompt.pii_status,
                "created_at": _iso(prompt.created_at),
            },
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_files(
    db: Session, filters: ExportFilters, directory: Path, progress: Progress | None = None
) -> dict[str, int]:
    """Write every dataset into `directory`; returns row counts by dataset.

    `progress(fraction)` is told how far the export is after each dataset.
    """
    report = progress or (lambda _fraction: None)
    writers = {name: DatasetWriter(directory, name) for name in DATASETS}
    try:
        for row in sft_rows(db, filters):
            writers["sft"].write(row)
        report(0.3)
        write_rankings(db, filters, writers["rankings"], writers["pairwise"])
        write_edits(db, filters, writers["sft"], writers["pairwise"])
        report(0.8)
        for row in prompt_rows(db, filters):
            writers["prompts"].write(row)
        report(0.95)
    finally:
        for w in writers.values():
            w.close()
    return {name: writers[name].count for name in DATASETS}


def content_hash(filters: dict[str, Any], file_hashes: dict[str, str]) -> str:
    """sha256 over the canonical filters and each data file's sha256 (names sorted)."""
    doc = json.dumps({"filters": filters, "files": dict(sorted(file_hashes.items()))}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass
class StagedBatch:
    """Data files written to a temporary directory, not yet recorded."""

    tmp: Path
    filters: ExportFilters
    counts: dict[str, int]
    files: dict[str, str]

    def discard(self) -> None:
        """Remove the temporary directory."""
        shutil.rmtree(self.tmp, ignore_errors=True)


def stage_batch(
    db: Session, filters: ExportFilters, settings: Settings | None = None, progress: Progress | None = None
) -> StagedBatch:
    """Write the data files into a new temporary directory under the exports directory (reads only)."""
    root = (settings or get_settings()).exports_dir
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        counts = write_files(db, filters, tmp, progress)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedBatch(tmp, filters, counts, files)


def record_batch(db: Session, staged: StagedBatch, created_by: User | None) -> ExportBatch:
    """Insert the batch row, add the manifest and move the directory into place, synced to disk.

    The caller commits; the directory is complete and durable before the row can be committed.
    """
    canonical = staged.filters.canonical()
    tmp, root = staged.tmp, staged.tmp.parent
    try:
        batch = ExportBatch(
            content_hash=content_hash(canonical, staged.files), path="", filters=canonical,
            counts=staged.counts, formats=FORMATS, created_by_id=created_by.id if created_by else None,
            created_at=utcnow(),
        )
        db.add(batch)
        db.flush()
        manifest = {
            "id": batch.id, "content_hash": batch.content_hash, "filters": canonical,
            "counts": staged.counts, "files": staged.files, "formats": FORMATS,
            "created_at": _iso(batch.created_at), "created_by": created_by.username if created_by else None,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for p in tmp.iterdir():
            p.chmod(0o444)
        final = root / str(batch.id)
        if final.exists():
            # Left by a transaction that rolled back after writing (an id the database reused).
            final.rename(root / f".orphan-{batch.id}-{uuid.uuid4().hex[:8]}")
        durable_replace(tmp, final)
    except BaseException:
        staged.discard()
        raise
    batch.path = str(final)
    db.flush()
    return batch


def create_export_batch(
    db: Session, filters: ExportFilters, created_by: User | None, settings: Settings | None = None
) -> ExportBatch:
    """Write a new immutable batch directory and record it in one go; the caller commits.

    Files go to a temporary directory that is renamed into place once complete and synced, so a
    reader never sees a half-written batch. The console runs this as a job (app/exports/jobs.py).
    """
    return record_batch(db, stage_batch(db, filters, settings), created_by)


def list_batches(db: Session, limit: int = 100) -> list[ExportBatch]:
    """Export batches, newest first."""
    return list(db.scalars(select(ExportBatch).order_by(ExportBatch.id.desc()).limit(limit)))


def get_batch(db: Session, batch_id: int) -> ExportBatch:
    """One batch, or NotFound."""
    batch = db.get(ExportBatch, batch_id)
    if batch is None:
        raise NotFound("There is no such export batch.")
    return batch


def batch_file(db: Session, batch_id: int, name: str) -> Path:
    """The path of one file of a batch (only names its manifest lists), or NotFound."""
    batch = get_batch(db, batch_id)
    directory = Path(batch.path)
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise NotFound("This batch's directory is missing on disk.")
    allowed = set(json.loads(manifest_path.read_text())["files"]) | {"manifest.json"}
    if name not in allowed:
        raise NotFound("This batch has no such file.")
    return directory / name


def read_manifest(batch: ExportBatch) -> dict[str, Any] | None:
    """The batch's manifest.json, or None when the directory is gone."""
    path = Path(batch.path) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def filters_from_form(form: dict[str, list[str]]) -> ExportFilters:
    """Export filters from console form fields (multi-valued lists of strings), or AppError."""

    def ints(key: str) -> list[int]:
        values = [v for v in form.get(key, []) if v]
        if not all(v.isdigit() for v in values):
            raise AppError(f"{key}: expected ids.")
        return [int(v) for v in values]

    def one(key: str) -> str | None:
        values = [v for v in form.get(key, []) if v]
        return values[0] if values else None

    return parse_filters(
        {
            "queues": ints("queues"),
            "labelers": ints("labelers"),
            "since": one("since"),
            "until": one("until"),
            "exclude_flags": [v for v in form.get("exclude_flags", []) if v],
            "splits": [v for v in form.get("splits", []) if v],
        }
    )
