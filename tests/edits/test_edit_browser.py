"""An edit of the best completion submitted by keyboard in Chromium; its SFT row and pair in the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import session_factory
from app.edits.models import CompletionEdit
from app.enums import TaskKind
from app.exports.service import ExportFilters, create_export_batch
from app.labeling.models import Assignment
from app.rankings.models import Completion, Ranking
from tests.factories import Factory

pytestmark = pytest.mark.browser


def test_edit_by_keyboard_lands_in_the_export(committed_db, live_server, page) -> None:
    f = Factory(committed_db)
    q = f.queue(TaskKind.ranking, k=4, name="edit queue", allow_edits=True)
    f.task(q, f.prompt(q, "Name a primary colour."))
    f.user("labeler", username="lena")
    committed_db.commit()
    page.goto(live_server.url + "/login")
    page.fill("#username", "lena")
    page.fill("#password", Factory.password)
    page.click("button[type=submit]")
    page.goto(live_server.url + "/label")
    page.click("button[data-next]")
    page.wait_for_url("**/label/a/*")
    letters = page.eval_on_selector_all(".rank-card", "els => els.map(e => e.dataset.letter)")
    for i, x in enumerate(letters):  # A..D into tiers 1..4 with number keys, each rated 5
        page.focus(f'.rank-card[data-letter="{x}"]')
        page.keyboard.press(str(i + 1))
        page.focus(f'.rank-card[data-letter="{x}"] input[value="5"]')
        page.keyboard.press("Space")
    best = letters[0]
    page.focus("#edit-of")
    page.keyboard.press("ArrowDown")  # "No edit" -> the first letter
    assert page.input_value("#edit-of") == best
    # Choosing a completion copies its text into the editor and moves there.
    assert page.evaluate("document.activeElement.id") == "edit-text"
    page.keyboard.press("Control+End")
    page.keyboard.type(" Fixed by hand.")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(live_server.url + "/label")

    s = session_factory()()
    try:
        [edit] = list(s.scalars(select(CompletionEdit)))
        [ranking] = list(s.scalars(select(Ranking)))
        [a] = list(s.scalars(select(Assignment)))
        original = s.get(Completion, a.display_order[0])
        assert original is not None and edit.completion_id == original.id and edit.ranking_id == ranking.id
        assert edit.text == original.text + " Fixed by hand."
        batch = create_export_batch(s, ExportFilters(), None)
        s.commit()
        root = Path(batch.path)
        sft = [json.loads(x) for x in (root / "sft.jsonl").read_text().splitlines()]
        pairs = [json.loads(x) for x in (root / "pairwise.jsonl").read_text().splitlines()]
    finally:
        s.close()
    assert [(r["prompt"], r["completion"], r["provenance"]["edit_id"]) for r in sft] == [
        ("Name a primary colour.", edit.text, edit.id)
    ]
    [pair] = [p for p in pairs if p["provenance"]["from_edit"]]
    assert (pair["chosen"], pair["rejected"]) == (edit.text, original.text)
    assert len(pairs) == 7  # the ranking's 6 pairs and the edit's
