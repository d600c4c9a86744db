"""Export batches: writing, reading, hashing, grouping comparisons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data import group_comparisons, ranking_pairs, read_batch, write_batch


def test_write_read_roundtrip(tmp_path: Path) -> None:
    b = write_batch(
        tmp_path / "b",
        sft=[{"prompt": "p", "completion": "c", "split": "valid"}],
        prompts=[{"prompt": "q"}],
        batch_id=7,
        filters={"queue": 1},
    )
    m = json.loads((b / "manifest.json").read_text())
    assert m["id"] == 7 and m["counts"] == {"sft": 1, "pairwise": 0, "rankings": 0, "prompts": 1}
    assert set(m["files"]) == {"sft.jsonl", "pairwise.jsonl", "rankings.jsonl", "prompts.jsonl"}
    batch = read_batch(b)
    assert batch.split("sft", "valid")[0]["completion"] == "c"
    assert batch.split("prompts", "train")[0]["prompt"] == "q"
    with pytest.raises(FileExistsError):
        write_batch(tmp_path / "b")


def test_missing_files_are_zero_rows_and_tampering_is_caught(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "sft.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    assert len(read_batch(tmp_path / "x").sft) == 1 and read_batch(tmp_path / "x").rankings == []
    b = write_batch(tmp_path / "b", sft=[{"prompt": "p", "completion": "c"}])
    (b / "sft.jsonl").write_text('{"prompt": "p", "completion": "changed"}\n')
    with pytest.raises(ValueError, match="sha256"):
        read_batch(b)


def test_ranking_pairs_drop_ties() -> None:
    assert ranking_pairs([2, 1, 2, 3]) == [(1, 0), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert ranking_pairs([1, 1]) == []


def test_group_comparisons_from_rankings_and_pairwise() -> None:
    groups = group_comparisons(
        [{"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 1, 2]}],
        [
            {"prompt": "q", "chosen": "x", "rejected": "y"},
            {"prompt": "q", "chosen": "y", "rejected": "z"},
            {"prompt": "r", "chosen": "s", "rejected": "s"},
        ],
    )
    assert [(g.prompt, g.completions, g.pairs) for g in groups] == [
        ("p", ["a", "b", "c"], [(0, 2), (1, 2)]),
        ("q", ["x", "y", "z"], [(0, 1), (1, 2)]),
    ]
