"""File import: every kind of bad row, both modes, dedup, the per-user cap, splits, streaming."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from app.config import get_settings
from app.enums import PIIStatus, Split, TaskKind
from app.errors import AppError
from app.labeling.models import Task
from app.prompts import importer as importer_mod
from app.prompts import service
from app.prompts.models import Prompt
from app.prompts.rules import dedup_key, split_for


def _jsonl(*rows: object) -> io.BytesIO:
    lines = [
        r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode() for r in rows
    ]
    return io.BytesIO(b"\n".join(lines) + b"\n")


def _import(db, queue, data: io.BytesIO, name: str = "p.jsonl", mode: str = "valid_rows", settings=None):
    return service.import_file(db, settings or get_settings(), queue.id, name, data, mode, None)


def _texts(db, queue) -> list[str]:
    return list(db.scalars(select(Prompt.text).where(Prompt.queue_id == queue.id).order_by(Prompt.id)))


BAD_JSONL = [
    {"prompt": "Good one about cats", "user_id": "u1"},  # 1 ok
    '{"prompt": "broken',  # 2 bad JSON
    '["a list"]',  # 3 not an object
    {"text_missing": "x"},  # 4 missing field
    {"prompt": 42},  # 5 not a string
    {"prompt": "   "},  # 6 empty
    {"prompt": "x" * 20_001},  # 7 too long
    {"prompt": "bell \u0007 char"},  # 8 control character
    {"prompt": "fine", "user_id": ["u"]},  # 9 bad user id type
    {"prompt": "fine too", "user_id": "u" * 129},  # 10 user id too long
    b'{"prompt": "caf\xe9 latin-1"}',  # 11 not UTF-8
    {"prompt": "fine", "meta": "not an object"},  # 12 bad meta
    "",  # 13 blank: skipped
    {"text": "Good two about dogs", "external_user_id": 7},  # 14 ok (text + int user id)
]


def test_jsonl_every_bad_row_is_reported_by_line_and_valid_rows_are_taken(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    imp = _import(db, queue, _jsonl(*BAD_JSONL))
    assert imp.status == "done" and imp.accepted == 2 and imp.rejected == 11
    reasons = {r["line"]: r["reason"] for r in imp.report if r["kind"] == "rejected"}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "not valid JSON" in reasons[2]
    assert "expected an object" in reasons[3]
    assert "missing the 'prompt' field" in reasons[4]
    assert "must be a string" in reasons[5]
    assert "is empty" in reasons[6]
    assert "the limit is 20000" in reasons[7]
    assert "control characters" in reasons[8]
    assert "'user_id' must be a string or an integer" in reasons[9]
    assert "longer than 128" in reasons[10]
    assert "not valid UTF-8" in reasons[11]
    assert "'meta' must be an object" in reasons[12]
    assert _texts(db, queue) == ["Good one about cats", "Good two about dogs"]
    # Demonstration queues get one task per cleared prompt, with the queue's overlap.
    tasks = db.scalars(select(Task).where(Task.queue_id == queue.id)).all()
    assert len(tasks) == 2 and all(t.overlap == queue.overlap and t.kind == "demonstration" for t in tasks)


def test_all_or_nothing_takes_nothing_but_still_lists_every_reject(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    imp = _import(db, queue, _jsonl(*BAD_JSONL), mode="all_or_nothing")
    assert imp.status == "failed" and imp.accepted == 0 and imp.rejected == 11
    assert len([r for r in imp.report if r["kind"] == "rejected"]) == 11
    assert _texts(db, queue) == []
    assert db.scalar(select(func.count()).select_from(Task).where(Task.queue_id == queue.id)) == 0
    # A clean file in the same mode goes in whole.
    ok = _import(db, queue, _jsonl({"prompt": "one"}, {"prompt": "two"}), mode="all_or_nothing")
    assert ok.status == "done" and ok.accepted == 2 and _texts(db, queue) == ["one", "two"]


def test_all_or_nothing_rolls_back_rows_written_in_earlier_batches(db, factory, monkeypatch) -> None:
    monkeypatch.setattr(importer_mod, "BATCH_ROWS", 2)
    queue = factory.queue(TaskKind.ranking)
    rows = [{"prompt": f"prompt {i}"} for i in range(5)] + ["not json"]
    imp = _import(db, queue, _jsonl(*rows), mode="all_or_nothing")
    assert imp.status == "failed" and imp.report == [
        {"line": 6, "kind": "rejected", "reason": imp.report[0]["reason"]}
    ]
    assert _texts(db, queue) == []


CSV_FILE = (
    "prompt,user_id,topic\n"
    "Plain row,u1,cats\n"  # 2 ok
    '"Multi-line\nquoted prompt",u2,dogs\n'  # 3-4 ok (one record over two lines)
    "too,many,fields,here\n"  # 5 wrong field count
    ",u3,empty\n"  # 6 empty prompt
    + ("x" * 20_001)
    + ",u4,long\n"  # 7 too long
    + "Last good row,,birds\n"  # 8 ok, no user id
)


def test_csv_rows_by_line_including_multiline_records(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    data = io.BytesIO(CSV_FILE.encode() + b"bad \xff byte,u5,x\n")  # 9 not UTF-8
    imp = _import(db, queue, data, name="prompts.csv")
    reasons = {r["line"]: r["reason"] for r in imp.report}
    assert imp.accepted == 3 and imp.rejected == 4
    assert "expected 3 fields, found 4" in reasons[5]
    assert "is empty" in reasons[6]
    assert "limit" in reasons[7]
    assert "not valid UTF-8" in reasons[9]
    prompts = db.scalars(select(Prompt).where(Prompt.queue_id == queue.id).order_by(Prompt.id)).all()
    assert [p.text for p in prompts] == ["Plain row", "Multi-line\nquoted prompt", "Last good row"]
    assert prompts[0].meta == {"topic": "cats", "line": 2} and prompts[2].external_user_id is None


def test_csv_without_prompt_column_and_unknown_extension_change_nothing(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    with pytest.raises(AppError, match="no 'prompt' column"):
        _import(db, queue, io.BytesIO(b"question,user\nhi,u1\n"), name="p.csv")
    with pytest.raises(AppError, match="JSON Lines"):
        _import(db, queue, io.BytesIO(b"x"), name="p.xlsx")
    assert _texts(db, queue) == []


def test_write_prompt_queues_refuse_imports(db, factory) -> None:
    queue = factory.queue(TaskKind.write_prompt)
    with pytest.raises(AppError, match="write prompts"):
        _import(db, queue, _jsonl({"prompt": "x"}))


def test_dedup_by_long_shared_prefix_within_the_file_and_against_the_database(db, factory) -> None:
    settings = get_settings().model_copy(update={"prompt_dedup_prefix_chars": 20})
    queue = factory.queue(TaskKind.ranking)
    base = "Write a short poem about the sea"
    factory.prompt(queue, text="Already here: a prompt", dedup_key=dedup_key("Already here: a prompt", 20))
    imp = _import(
        db,
        queue,
        _jsonl(
            {"prompt": base + " in winter."},  # kept
            {"prompt": base + " in summer, please."},  # same first 20 chars -> duplicate
            {"prompt": "  WRITE a   short poem ABOUT something else"},  # same after normalising -> duplicate
            {"prompt": "Already here: a prompt with more"},  # prefix of an existing prompt -> duplicate
            {"prompt": "Write a haiku about the sea."},  # differs within 20 chars -> kept
        ),
        settings=settings,
    )
    assert imp.accepted == 2 and imp.duplicates == 3
    assert [r["line"] for r in imp.report if r["kind"] == "duplicate"] == [2, 3, 4]
    # With a longer prefix the two sea poems differ and both are kept.
    long_settings = get_settings().model_copy(update={"prompt_dedup_prefix_chars": 200})
    queue2 = factory.queue(TaskKind.ranking)
    imp2 = _import(
        db,
        queue2,
        _jsonl({"prompt": "Q: " + base + " in winter."}, {"prompt": "Q: " + base + " in summer."}),
        settings=long_settings,
    )
    assert imp2.accepted == 2 and imp2.duplicates == 0


def test_per_user_cap_counts_existing_prompts_and_the_file(db, factory) -> None:
    settings = get_settings().model_copy(update={"prompt_max_per_user": 3})
    queue = factory.queue(TaskKind.ranking)
    factory.prompt(queue, text="existing from alice", external_user_id="alice")
    rows = [{"prompt": f"alice prompt {i}", "user_id": "alice"} for i in range(4)]
    rows += [{"prompt": f"bob prompt {i}", "user_id": "bob"} for i in range(3)]
    rows += [{"prompt": f"anonymous prompt {i}"} for i in range(5)]
    imp = _import(db, queue, _jsonl(*rows), settings=settings)
    assert imp.capped == 2 and imp.accepted == 10
    assert [r["line"] for r in imp.report if r["kind"] == "capped"] == [3, 4]
    counts = dict(
        db.execute(
            select(Prompt.external_user_id, func.count())
            .where(Prompt.queue_id == queue.id)
            .group_by(Prompt.external_user_id)
        ).all()
    )
    assert counts["alice"] == 3 and counts["bob"] == 3 and counts[None] == 5


def test_split_is_by_user_id_deterministic_and_never_straddles(db, factory) -> None:
    queue = factory.queue(TaskKind.ranking)
    rows = [{"prompt": f"user {u} prompt {i}", "user_id": f"user-{u}"} for u in range(60) for i in range(3)]
    imp = _import(db, queue, _jsonl(*rows))
    assert imp.accepted == 180
    splits: dict[str, set[str]] = defaultdict(set)
    for user, split in db.execute(
        select(Prompt.external_user_id, Prompt.split).where(Prompt.queue_id == queue.id)
    ):
        splits[user].add(split)
    assert all(len(s) == 1 for s in splits.values())
    seen = {next(iter(s)) for s in splits.values()}
    assert seen == {"train", "valid", "test"}
    # Deterministic: a pure function of the user id, the same on every run.
    assert all(
        next(iter(splits[f"user-{u}"])) == split_for(f"user:user-{u}", 0.1, 0.1).value for u in range(60)
    )
    assert split_for("user:x", 0.0, 0.0) is Split.train and split_for("user:x", 0.0, 1.0) is Split.test


def test_prompts_with_personal_data_are_held_and_get_no_task(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    imp = _import(
        db, queue, _jsonl({"prompt": "Email bob@example.com the report"}, {"prompt": "Plain prompt"})
    )
    assert imp.accepted == 2 and imp.held_for_pii == 1
    held = db.scalar(
        select(Prompt).where(Prompt.queue_id == queue.id, Prompt.pii_status == PIIStatus.held.value)
    )
    assert held is not None and held.pii_findings[0]["kind"] == "email"
    task_prompts = set(db.scalars(select(Task.prompt_id).where(Task.queue_id == queue.id)))
    assert held.id not in task_prompts and len(task_prompts) == 1


class CountingStream(io.RawIOBase):
    """A file that produces JSONL lines on demand and counts how many were read."""

    def __init__(self, n: int) -> None:
        self.n, self.read_lines = n, 0
        self._lines: Iterator[bytes] = (
            json.dumps({"prompt": f"streamed prompt {i}", "user_id": f"s{i}"}).encode() + b"\n"
            for i in range(n)
        )

    def readable(self) -> bool:
        return True

    def __iter__(self):  # type: ignore[no-untyped-def]
        return self

    def __next__(self) -> bytes:
        line = next(self._lines)
        self.read_lines += 1
        return line


def test_import_streams_in_batches_instead_of_reading_the_whole_file(db, factory, monkeypatch) -> None:
    monkeypatch.setattr(importer_mod, "BATCH_ROWS", 100)
    stream = CountingStream(1000)
    read_at_first_flush: list[int] = []
    original = importer_mod.Importer._flush_batch

    def spy(self):  # type: ignore[no-untyped-def]
        if not read_at_first_flush:
            read_at_first_flush.append(stream.read_lines)
        original(self)

    monkeypatch.setattr(importer_mod.Importer, "_flush_batch", spy)
    queue = factory.queue(TaskKind.ranking)
    imp = _import(db, queue, stream)  # type: ignore[arg-type]
    assert imp.accepted == 1000
    # The first batch was written after reading about one batch, not the whole file.
    assert read_at_first_flush[0] <= 101


@pytest.mark.slow
def test_a_100k_prompt_file_imports(db, factory, tmp_path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"prompt": f"Big file prompt number {i}", "user_id": f"u{i % 1000}"}) + "\n")
    queue = factory.queue(TaskKind.ranking)
    settings = get_settings().model_copy(update={"prompt_max_per_user": 100})
    with path.open("rb") as fh:
        imp = service.import_file(db, settings, queue.id, "big.jsonl", fh, "valid_rows", None)
    assert imp.accepted == 100_000 and imp.rejected == 0


def test_the_sample_file_exercises_every_rule(db, factory) -> None:
    from pathlib import Path

    queue = factory.queue(TaskKind.demonstration)
    path = Path(__file__).resolve().parents[2] / "static" / "admin" / "sample-prompts.jsonl"
    with path.open("rb") as fh:
        imp = _import(db, queue, fh)  # type: ignore[arg-type]
    assert (imp.accepted, imp.rejected, imp.duplicates, imp.held_for_pii) == (14, 2, 1, 4)


def test_oversize_upload_is_refused_before_reading(db, factory) -> None:
    queue = factory.queue(TaskKind.demonstration)
    with pytest.raises(AppError, match="larger than"):
        service.import_file(db, get_settings(), queue.id, "p.jsonl", io.BytesIO(b""), "valid_rows", None,
                            size=get_settings().max_upload_bytes + 1)
    with pytest.raises(AppError, match="import mode"):
        _import(db, queue, _jsonl({"prompt": "x"}), mode="sometimes")
