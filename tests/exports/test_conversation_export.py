"""Conversations in export batches: rows carry `messages` in the contract layout (an SFT row is the
conversation ending with the demonstration, TRL's conversational format), and the training
library reads them back as conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from sqlalchemy import select

from app.enums import TaskKind
from app.exports.service import ExportFilters, create_export_batch
from app.prompts import conversation
from app.rankings.models import Completion
from tests.admin.builders import demonstration, ranking
from tests.exports.test_exports import present

CONV = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "What is a comet?"},
    {"role": "assistant", "content": "A ball of ice and dust orbiting the Sun."},
    {"role": "user", "content": "Why does it have a tail?"},
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_conversation_rows_carry_messages_in_every_dataset(db, factory) -> None:
    alice = factory.user("labeler")
    demos, ranks = factory.queue(TaskKind.demonstration), factory.queue(TaskKind.ranking, k=4)
    conv = factory.prompt(demos, text=conversation.transcript(CONV), messages=CONV)
    plain = factory.prompt(demos, text="Explain gravity.")
    demonstration(db, factory.task(demos, conv), alice, "Sunlight pushes its gas and dust away.")
    demonstration(db, factory.task(demos, plain), alice, "Masses attract.")
    ranked = factory.prompt(ranks, text=conversation.transcript(CONV[:2]) + "!", messages=CONV[:2])
    task = factory.task(ranks, ranked)
    ranking(db, task, alice, [1, 2, 3, 4])
    texts = [c.text for c in db.scalars(select(Completion).where(Completion.task_id == task.id)
                                        .order_by(Completion.position))]

    root = Path(create_export_batch(db, ExportFilters(), None).path)
    sft = _rows(root / "sft.jsonl")
    assert [set(r) for r in sft] == [
        {"messages", "split", "provenance"}, {"prompt", "completion", "split", "provenance"}
    ]
    reply = {"role": "assistant", "content": "Sunlight pushes its gas and dust away."}
    assert sft[0]["messages"] == [*CONV, reply]
    assert sft[1]["prompt"] == "Explain gravity." and sft[1]["completion"] == "Masses attract."
    (rank_row,) = _rows(root / "rankings.jsonl")
    assert rank_row["messages"] == CONV[:2] and "prompt" not in rank_row and rank_row["completions"] == texts
    pairs = _rows(root / "pairwise.jsonl")
    assert len(pairs) == 6 and all(p["messages"] == CONV[:2] and "prompt" not in p for p in pairs)
    prompts = {json.dumps(r.get("messages") or r["prompt"]) for r in _rows(root / "prompts.jsonl")}
    assert prompts == {json.dumps(CONV), json.dumps("Explain gravity."), json.dumps(CONV[:2])}
    # The Parquet twin holds the same rows (null where a row has no such field).
    assert present(pq.read_table(root / "sft.parquet").to_pylist()) == sft
    assert present(pq.read_table(root / "pairwise.parquet").to_pylist()) == pairs

    # The training library reads them back as conversations, with the demonstration as the reply.
    from training.chat import row_completion, row_prompt
    from training.data import group_comparisons, read_batch

    batch = read_batch(root)
    assert row_prompt(batch.sft[0]) == CONV and row_completion(batch.sft[0]) == reply["content"]
    assert row_prompt(batch.sft[1]) == "Explain gravity."
    (group, *_) = group_comparisons(batch.rankings, [])
    assert group.prompt == CONV[:2] and len(group.pairs) == 6
    assert {json.dumps(row_prompt(r)) for r in batch.prompts} == prompts


def test_conversation_files_load_with_datasets(db, factory, tmp_path) -> None:
    import datasets

    alice = factory.user("labeler")
    demos = factory.queue(TaskKind.demonstration)
    conv = factory.prompt(demos, text=conversation.transcript(CONV), messages=CONV)
    demonstration(db, factory.task(demos, conv), alice, "Sunlight pushes it away.")
    root = Path(create_export_batch(db, ExportFilters(), None).path)
    cache = str(tmp_path / "hf")
    for fmt, ext in (("json", "jsonl"), ("parquet", "parquet")):
        ds = datasets.load_dataset(fmt, data_files=str(root / f"sft.{ext}"), split="train", cache_dir=cache)
        assert ds[0]["messages"][-1] == {"role": "assistant", "content": "Sunlight pushes it away."}
        assert ds[0]["messages"][:-1] == CONV
