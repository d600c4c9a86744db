"""Edits of the best completion: checks, storage beside the ranking, export rows, review diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.edits.diff import change_summary, tokens, word_diff
from app.edits.models import CompletionEdit
from app.edits.service import edit_problems
from app.enums import TaskKind
from app.exports.service import ExportFilters, create_export_batch
from app.labeling.models import Assignment
from app.prompts.models import Prompt
from app.rankings.models import Completion, Ranking
from app.rankings.schemas import parse_ranking_form
from app.rankings.service import letter
from tests.helpers import take_task


def _ranking(k: int = 4, **extra: str) -> dict[str, str]:
    data = {}
    for i in range(k):
        data[f"tier_{letter(i)}"] = str(i + 1)  # A best
        data[f"likert_{letter(i)}"] = "5"
    data.update(extra)
    return data


@pytest.fixture()
def edit_queue(factory):
    q = factory.queue(TaskKind.ranking, k=4, allow_edits=True)
    factory.task(q, factory.prompt(q, "Name a primary colour."))
    return q


def _best_text(db, aid: int) -> str:
    a = db.get(Assignment, aid)
    return db.get(Completion, a.display_order[0]).text


# ------------------------------------------------------------------ pure parts


def test_word_diff_rebuilds_both_texts() -> None:
    a, b = "The sky is green today.", "The sky is blue today, mostly."
    pieces = word_diff(a, b)
    assert "".join(p.text for p in pieces if p.op != "insert") == a
    assert "".join(p.text for p in pieces if p.op != "delete") == b
    assert [p.op for p in pieces] == ["equal", "delete", "insert", "equal", "delete", "insert"]
    assert change_summary(pieces) == {"removed": 2, "added": 3}
    assert "".join(tokens("  a  b\nc ")) == "  a  b\nc "


def _sub(**fields: str):
    return parse_ranking_form({k: [v] for k, v in _ranking(**fields).items()})


def test_edit_problems_name_each_bad_input() -> None:
    originals = {"A": "Red.", "B": "Blue.", "C": "x", "D": "y"}
    ok = _sub(edit_of="A", edit_text="Red, blue or yellow.")
    assert edit_problems(ok, True, originals, []) == []
    assert edit_problems(_sub(), True, originals, None) == []  # no edit at all
    cases = {
        "does not take edits": (ok, False, None),
        "Choose which best": (_sub(edit_text="text"), True, None),
        "does not belong": (_sub(edit_of="Z", edit_text="t"), True, None),
        "Only a best completion": (_sub(edit_of="B", edit_text="Better."), True, None),
        "is empty": (_sub(edit_of="A", edit_text="   "), True, None),
        "unchanged": (_sub(edit_of="A", edit_text="  Red.  "), True, None),
        "personal data (an email address)": (ok, True, [{"kind": "email", "start": 0, "end": 3}]),
    }
    for expected, (sub, allow, findings) in cases.items():
        problems = edit_problems(sub, allow, originals, findings)
        assert len(problems) == 1 and expected in problems[0], (expected, problems)


def test_oversize_edit_is_refused_not_cut(monkeypatch) -> None:
    from app.config import get_settings

    limit = get_settings().max_text_chars
    problems = edit_problems(_sub(edit_of="A", edit_text="x" * (limit + 1)), True, {"A": "Red."}, None)
    assert problems == [f"The edit of A is {limit + 1} characters long; the limit is {limit}."]


# ------------------------------------------------------------------ over HTTP


def test_edit_is_stored_with_the_ranking(login, db, edit_queue) -> None:
    web = login("labeler")
    aid = take_task(web)
    page = web.get(f"/label/a/{aid}")
    assert 'name="edit_text"' in page.text and "Fix the best completion" in page.text
    resp = web.post(f"/label/a/{aid}/ranking", data=_ranking(edit_of="A", edit_text=" Red, blue or yellow. "))
    assert resp.status_code == 303, resp.text[:500]
    ranking = db.query(Ranking).filter_by(assignment_id=aid).one()
    edit = db.query(CompletionEdit).one()
    assert edit.ranking_id == ranking.id and edit.text == "Red, blue or yellow."
    assert edit.completion_id == db.get(Assignment, aid).display_order[0]
    assert edit.user_id == web.user.id and edit.guideline_version_id == ranking.guideline_version_id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"edit_of": "A", "edit_text": ""}, "The edit of A is empty"),
        ({"edit_of": "A", "edit_text": "SAME"}, "is the completion unchanged"),
        ({"edit_of": "C", "edit_text": "Better"}, "Only a best completion can be edited"),
        ({"edit_of": "A", "edit_text": "Write to jane.doe@example.com"}, "seems to contain personal data"),
    ],
)
def test_bad_edit_refuses_everything_and_keeps_the_text(login, db, edit_queue, fields, message) -> None:
    web = login("labeler")
    aid = take_task(web)
    if fields["edit_text"] == "SAME":
        fields = {**fields, "edit_text": _best_text(db, aid)}
    resp = web.post(f"/label/a/{aid}/ranking", data=_ranking(**fields))
    assert resp.status_code == 422 and message in resp.text
    assert db.query(Ranking).count() == 0 and db.query(CompletionEdit).count() == 0
    if fields["edit_text"]:
        assert fields["edit_text"].replace("@", "&#64;") in resp.text or fields["edit_text"] in resp.text
    assert f'value="{fields["edit_of"]}" selected' in resp.text  # the choice is kept too


def test_queue_without_edits_refuses_an_edit(login, db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    assert 'name="edit_text"' not in web.get(f"/label/a/{aid}").text
    resp = web.post(f"/label/a/{aid}/ranking", data=_ranking(edit_of="A", edit_text="New"))
    assert resp.status_code == 422 and "does not take edits" in resp.text
    assert db.query(Ranking).count() == 0


def test_double_submit_with_an_edit_stores_one(login, db, edit_queue) -> None:
    web = login("labeler")
    aid = take_task(web)
    data = _ranking(edit_of="A", edit_text="Red, blue or yellow.")
    assert web.post(f"/label/a/{aid}/ranking", data=data).status_code == 303
    assert web.post(f"/label/a/{aid}/ranking", data=data).status_code == 303
    assert db.query(Ranking).count() == 1 and db.query(CompletionEdit).count() == 1


def test_edit_draft_is_autosaved_and_restored(login, db, edit_queue) -> None:
    web = login("labeler")
    aid = take_task(web)
    draft = {"edit_of": "A", "edit_text": "half-done <b>fix</b>"}
    resp = web.post(f"/label/a/{aid}/ranking/draft", data=draft)
    assert resp.status_code == 200
    page = web.get(f"/label/a/{aid}").text
    assert "half-done &lt;b&gt;fix&lt;/b&gt;" in page and 'value="A" selected' in page


# ------------------------------------------------------------------ export and review


def test_export_has_the_edit_as_sft_row_and_marked_pair(login, db, edit_queue, tmp_path: Path) -> None:
    web = login("labeler")
    aid = take_task(web)
    original = _best_text(db, aid)
    web.post(f"/label/a/{aid}/ranking", data=_ranking(edit_of="A", edit_text="Red, blue or yellow."))
    edit = db.query(CompletionEdit).one()
    batch = create_export_batch(db, ExportFilters(), None)
    root = Path(batch.path)
    sft = [json.loads(x) for x in (root / "sft.jsonl").read_text().splitlines()]
    pairs = [json.loads(x) for x in (root / "pairwise.jsonl").read_text().splitlines()]
    assert [(r["completion"], r["provenance"]["edit_id"]) for r in sft] == [("Red, blue or yellow.", edit.id)]
    from_edit = [p for p in pairs if p["provenance"]["from_edit"]]
    assert len(pairs) == 6 + 1 and len(from_edit) == 1
    [p] = from_edit
    assert (p["chosen"], p["rejected"]) == ("Red, blue or yellow.", original)
    assert p["prompt"] == "Name a primary colour." and p["provenance"]["edit_id"] == edit.id
    assert p["provenance"]["rejected_completion_id"] == edit.completion_id
    assert all(q["provenance"]["from_edit"] is False for q in pairs if q is not p)
    assert batch.counts["sft"] == 1 and batch.counts["pairwise"] == 7
    import pyarrow.parquet as pq

    table = pq.read_table(root / "pairwise.parquet").to_pylist()
    assert sum(1 for r in table if r["provenance"]["from_edit"]) == 1


def test_an_edit_of_a_conversation_exports_its_messages(login, db, edit_queue, tmp_path: Path) -> None:
    web = login("labeler")
    aid = take_task(web)
    original = _best_text(db, aid)
    prompt = db.get(Prompt, db.get(Assignment, aid).task.prompt_id)
    turns = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": prompt.text}]
    prompt.messages = turns
    db.flush()
    web.post(f"/label/a/{aid}/ranking", data=_ranking(edit_of="A", edit_text="Red, blue or yellow."))
    root = Path(create_export_batch(db, ExportFilters(), None).path)
    [sft] = [json.loads(x) for x in (root / "sft.jsonl").read_text().splitlines()]
    pairs = [json.loads(x) for x in (root / "pairwise.jsonl").read_text().splitlines()]
    [pair] = [p for p in pairs if p["provenance"]["from_edit"]]
    assert sft["messages"] == [*turns, {"role": "assistant", "content": "Red, blue or yellow."}]
    assert "prompt" not in sft and "completion" not in sft
    assert pair["messages"] == turns and "prompt" not in pair
    assert (pair["chosen"], pair["rejected"]) == ("Red, blue or yellow.", original)


def test_review_page_shows_both_texts_and_an_escaped_diff(login, db, factory, edit_queue) -> None:
    web = login("labeler")
    aid = take_task(web)
    original = _best_text(db, aid)
    edited = original + " <script>x()</script>"
    web.post(f"/label/a/{aid}/ranking", data=_ranking(edit_of="A", edit_text=edited))
    ranking = db.query(Ranking).one()
    admin = login("admin")
    listing = admin.get("/admin/review").text
    assert "edited</span>" in listing
    page = admin.get(f"/admin/review/rankings/{ranking.id}").text
    assert "Edit of the best completion" in page
    assert "<ins> &lt;script&gt;x()&lt;/script&gt;</ins>" in page and "<script>x()" not in page
    assert "data-edit-original" in page and "data-edit-text" in page
