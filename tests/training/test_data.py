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


BAD_ROWS = [
    ("sft.jsonl", {"prompt": "p", "completion": None}, '"completion" must be a string .*not null'),
    ("sft.jsonl", {"prompt": "p", "completion": 5}, '"completion" must be a string .*not int'),
    ("sft.jsonl", {"prompt": 7, "completion": "c"}, '"prompt" must be a string, not int'),
    (
        "sft.jsonl",
        {"prompt": "p", "completion": "c", "split": "validation"},
        '"split" must be one of train, valid, test',
    ),
    (
        "sft.jsonl",
        {"messages": [{"role": "user", "content": "hi"}]},
        'an SFT row needs a "completion" or "messages" ending',
    ),
    (
        "sft.jsonl",
        {"messages": [{"role": "bot", "content": "hi"}], "completion": "c"},
        '"messages": message 0',
    ),
    ("pairwise.jsonl", {"prompt": "p", "chosen": "a", "rejected": ["b"]}, '"rejected" must be a string'),
    (
        "rankings.jsonl",
        {"prompt": "p", "completions": "ab", "ranks": [1, 2]},
        '"completions" must be a list of strings',
    ),
    (
        "rankings.jsonl",
        {"prompt": "p", "completions": ["a", "b"], "ranks": ["x", "y"]},
        '"ranks" must be a list of integers',
    ),
    (
        "rankings.jsonl",
        {"prompt": "p", "completions": ["a", "b"], "ranks": [True, False]},
        '"ranks" must be a list of integers',
    ),
    (
        "rankings.jsonl",
        {"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 2]},
        '"ranks" has 2 entries for 3 completions',
    ),
    ("prompts.jsonl", {"prompt": None}, '"prompt" must be a string, not null'),
]


@pytest.mark.parametrize(("name", "row", "message"), BAD_ROWS)
def test_rows_of_the_wrong_type_are_named_by_file_and_line(
    tmp_path: Path, name: str, row: dict, message: str
) -> None:
    """A null completion used to be trained on as the text "None", a ranking's string of completions
    as its characters, and rows of an unknown split were silently left out."""
    (tmp_path / "x").mkdir()
    good = {"prompt": "q", "completion": "c"} if name == "sft.jsonl" else {"prompt": "q"}
    lines = [json.dumps(good)] if name in ("sft.jsonl", "prompts.jsonl") else []
    (tmp_path / "x" / name).write_text("\n".join([*lines, json.dumps(row)]) + "\n")
    with pytest.raises(ValueError, match=rf"{name}:{len(lines) + 1}: {message}"):
        read_batch(tmp_path / "x")
    # writing such a row fails the same way, before anything is written
    kind = name.removesuffix(".jsonl")
    with pytest.raises(ValueError, match=rf"{name} row 1: {message}"):
        write_batch(tmp_path / "b", **{kind: [row]})
    assert not (tmp_path / "b").exists() and [p.name for p in tmp_path.iterdir()] == ["x"]


def test_rows_of_every_accepted_shape_still_read(tmp_path: Path) -> None:
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    b = write_batch(
        tmp_path / "b",
        sft=[
            {"messages": conversation},
            {"messages": conversation[:1], "completion": "hey", "split": "test"},
        ],
        rankings=[{"prompt": "p", "completions": [{"text": "a"}, "b"], "ranks": [2, 1]}],
        pairwise=[{"messages": conversation[:1], "chosen": {"text": "a", "token_ids": [1]}, "rejected": "b"}],
        prompts=[{"messages": conversation[:1], "split": "valid"}],
    )
    batch = read_batch(b)
    assert [r.get("completion") for r in batch.sft] == [None, "hey"]
    assert batch.rankings[0]["completions"] == ["a", "b"] and batch.pairwise[0]["chosen"] == "a"
    assert batch.split("prompts", "valid")[0]["messages"] == conversation[:1]
