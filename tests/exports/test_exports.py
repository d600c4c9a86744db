"""Export batches: the file contract, PII and filter rules, reproducible hashes, datasets round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from app.enums import PIIStatus, TaskKind
from app.errors import AppError
from app.exports.service import ExportFilters, create_export_batch, parse_filters
from app.labeling.models import Task
from app.rankings.models import Completion
from tests.admin.builders import demonstration, ranking


@pytest.fixture()
def data(db, factory):  # type: ignore[no-untyped-def]
    """Two labelers, a demonstration queue and a K=4 ranking queue with an overlapped item."""
    alice, bob = factory.user("labeler", username="alice_x"), factory.user("labeler", username="bob_x")
    demos = factory.queue(TaskKind.demonstration)
    ranks = factory.queue(TaskKind.ranking, k=4, overlap=2)
    policy = factory.model_version()
    gv = ranks.guidelines[0].id
    p1 = factory.prompt(demos, text="Explain gravity.", split="train")
    t1 = factory.task(demos, p1)
    demonstration(
        db, t1, alice, "Gravity pulls masses together.", guideline_version_id=demos.guidelines[0].id
    )
    held = factory.prompt(demos, text="Email bob@example.com", pii_status=PIIStatus.held.value)
    demonstration(db, factory.task(demos, held), bob, "should never be exported")
    p2 = factory.prompt(ranks, text="Name a colour.", split="valid")
    t2 = factory.task(ranks, p2)
    for c in db.scalars(select(Completion).where(Completion.task_id == t2.id)):
        c.policy_version_id = policy.id
    # alice: positions 0 > 1 = 2 > 3 (a tie); bob: 1 > 0 > 2 > 3, flags 'hallucination' on position 3
    r_alice = ranking(db, t2, alice, [1, 2, 2, 3], guideline_version_id=gv)
    r_bob = ranking(db, t2, bob, [2, 1, 3, 4], flags={3: ["hallucination"]})
    return {
        "alice": alice,
        "bob": bob,
        "demos": demos,
        "ranks": ranks,
        "policy": policy,
        "r_alice": r_alice,
        "r_bob": r_bob,
        "p1": p1,
        "p2": p2,
        "held": held,
    }


def present(rows: list[dict]) -> list[dict]:
    """Parquet rows without the prompt fields a JSONL row lacks (a plain prompt has no messages,
    a conversation no prompt string): the fixed Parquet schema holds them as null."""
    return [{k: v for k, v in r.items() if v is not None or k not in OPTIONAL} for r in rows]


OPTIONAL = ("prompt", "messages", "completion")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_layout_manifest_and_rows(db, data) -> None:
    batch = create_export_batch(db, ExportFilters(), None)
    root = Path(batch.path)
    assert root.name == str(batch.id) and root.parent.name == "exports"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["id"] == batch.id and manifest["content_hash"] == batch.content_hash
    assert set(manifest["files"]) == {
        f"{n}.{ext}" for n in ("sft", "pairwise", "rankings", "prompts") for ext in ("jsonl", "parquet")
    }
    assert manifest["counts"] == batch.counts == {"sft": 1, "pairwise": 5 + 6, "rankings": 2, "prompts": 2}

    sft = _rows(root / "sft.jsonl")
    assert sft == [
        {
            "prompt": "Explain gravity.",
            "completion": "Gravity pulls masses together.",
            "split": "train",
            "provenance": sft[0]["provenance"],
        }
    ]
    prov = sft[0]["provenance"]
    assert (
        prov["labeler"] == "alice_x" and prov["prompt_id"] == data["p1"].id and prov["guideline_version"] == 1
    )

    rankings = _rows(root / "rankings.jsonl")
    assert [r["ranks"] for r in rankings] == [[1, 2, 2, 3], [2, 1, 3, 4]]
    assert rankings[0]["provenance"]["ranking_id"] == data["r_alice"].id
    assert rankings[0]["provenance"]["policy_versions"] == [data["policy"].id] * 4
    assert rankings[1]["provenance"]["flags"][3] == ["hallucination"]
    assert rankings[0]["split"] == "valid"

    pairs = _rows(root / "pairwise.jsonl")
    # alice's tie (positions 1 and 2) yields no pair: C(4,2) - 1 = 5; bob's ranking has no tie: 6.
    alice_pairs = [p for p in pairs if p["provenance"]["ranking_id"] == data["r_alice"].id]
    assert len(alice_pairs) == 5
    texts = rankings[0]["completions"]
    assert {(p["chosen"], p["rejected"]) for p in alice_pairs} == {
        (texts[0], texts[1]),
        (texts[0], texts[2]),
        (texts[0], texts[3]),
        (texts[1], texts[3]),
        (texts[2], texts[3]),
    }
    # Held prompts never leave; PPO prompts are the exportable ones.
    assert all("should never" not in json.dumps(r) for r in sft)
    assert [p["prompt"] for p in _rows(root / "prompts.jsonl")] == ["Explain gravity.", "Name a colour."]
    # Parquet twins hold the same rows.
    assert present(pq.read_table(root / "rankings.parquet").to_pylist()) == rankings
    assert present(pq.read_table(root / "sft.parquet").to_pylist()) == sft


def test_same_data_and_filters_give_the_same_hash_and_bytes(db, data) -> None:
    f = ExportFilters(queues=[data["ranks"].id, data["demos"].id], splits=["valid", "train"])
    a = create_export_batch(db, f, None)
    b = create_export_batch(
        db, ExportFilters(queues=[data["demos"].id, data["ranks"].id], splits=["train", "valid"]), None
    )
    assert a.id != b.id and a.path != b.path
    assert a.content_hash == b.content_hash
    for name in ("sft.jsonl", "pairwise.parquet", "rankings.jsonl", "prompts.parquet"):
        assert (Path(a.path) / name).read_bytes() == (Path(b.path) / name).read_bytes()
    # Different filters or different data: a different hash.
    c = create_export_batch(db, ExportFilters(splits=["train"]), None)
    assert c.content_hash != a.content_hash
    demonstration(db, _task_of(db, data["p1"]), data["bob"], "A second answer.")
    d = create_export_batch(db, f, None)
    assert d.content_hash != a.content_hash


def _task_of(db, prompt):  # type: ignore[no-untyped-def]
    return db.scalar(select(Task).where(Task.prompt_id == prompt.id))


def test_filters_labelers_flags_splits_and_dates(db, data) -> None:
    only_bob = create_export_batch(db, ExportFilters(labelers=[data["bob"].id]), None)
    assert only_bob.counts["rankings"] == 1 and only_bob.counts["sft"] == 0
    no_halluc = create_export_batch(db, ExportFilters(exclude_flags=["hallucination"]), None)
    rows = _rows(Path(no_halluc.path) / "rankings.jsonl")
    # bob's flagged completion is dropped: 3 completions left, re-ranked densely.
    assert [len(r["completions"]) for r in rows] == [4, 3] and rows[1]["ranks"] == [2, 1, 3]
    assert no_halluc.counts["pairwise"] == 5 + 3
    valid = create_export_batch(db, ExportFilters(splits=["valid"]), None)
    assert valid.counts == {"sft": 0, "pairwise": 11, "rankings": 2, "prompts": 1}
    old = create_export_batch(db, ExportFilters(until="2001-01-01"), None)
    assert old.counts == {"sft": 0, "pairwise": 0, "rankings": 0, "prompts": 0}
    assert old.filters["until"] == "2001-01-01"


def test_bad_filters_are_refused(db) -> None:
    with pytest.raises(AppError, match="unknown flags"):
        parse_filters({"exclude_flags": ["nope"]})
    with pytest.raises(AppError, match="after"):
        parse_filters({"since": "2024-02-01", "until": "2024-01-01"})
    with pytest.raises(AppError, match="splits"):
        parse_filters({"splits": ["dev"]})


def test_files_load_with_datasets(db, data, tmp_path) -> None:
    import datasets  # a dev dependency: the contract is that training libraries load these files
    batch = create_export_batch(db, ExportFilters(), None)
    root = Path(batch.path)
    cache = str(tmp_path / "hf-cache")
    for name, n in batch.counts.items():
        from_json = datasets.load_dataset(
            "json", data_files=str(root / f"{name}.jsonl"), split="train", cache_dir=cache
        )
        from_parquet = datasets.load_dataset(
            "parquet", data_files=str(root / f"{name}.parquet"), split="train", cache_dir=cache
        )
        assert from_json.num_rows == from_parquet.num_rows == n
        assert from_json[0]["prompt"] == from_parquet[0]["prompt"]
        assert "provenance" in from_parquet.column_names
    pairs = datasets.load_dataset(
        "parquet", data_files=str(root / "pairwise.parquet"), split="train", cache_dir=cache
    )
    assert set(pairs.column_names) == {"prompt", "messages", "chosen", "rejected", "split", "provenance"}
