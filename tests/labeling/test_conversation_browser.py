"""A conversation in Chromium, by keyboard only: its next assistant turn ranked, then continued (a
demonstration written); the history collapses behind a disclosure, every turn is escaped, and the
export carries the conversation with the labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db import session_factory
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.exports.service import ExportFilters, create_export_batch
from app.prompts import conversation
from app.rankings.models import Ranking
from tests.factories import Factory

pytestmark = pytest.mark.browser

EVIL = '<b>bold</b><img src=x onerror="document.title=\'pwned\'">'


def _conv(topic: str) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": "You are a concise assistant."}]
    for i in range(3):
        turns.append({"role": "user", "content": f"{topic} question {i} {EVIL if i == 0 else ''}".strip()})
        turns.append({"role": "assistant", "content": f"{topic} answer {i}"})
    turns.append({"role": "user", "content": f"Last {topic} question?"})
    return turns  # 8 turns: the first 5 collapse, the last 3 stay visible


def _setup(db: Any) -> dict[str, Any]:
    f = Factory(db)
    ranks = f.queue(TaskKind.ranking, k=4, name="chat ranks", priority=2)
    demos = f.queue(TaskKind.demonstration, name="chat demos", priority=1)
    out: dict[str, Any] = {}
    for queue, topic in ((ranks, "tides"), (demos, "comets")):
        msgs = _conv(topic)
        prompt = f.prompt(queue, conversation.transcript(msgs), messages=msgs)
        f.task(queue, prompt)
        out[topic] = msgs
    f.user("labeler", username="lena")
    db.commit()
    return out


def _rows(model: Any) -> list[Any]:
    s = session_factory()()
    try:
        rows = list(s.scalars(select(model)))
        for r in rows:
            if isinstance(r, Ranking):
                _ = list(r.entries)
        return rows
    finally:
        s.close()


def _check_conversation(page: Any, msgs: list[dict[str, str]]) -> None:
    """Last turns visible, earlier ones behind a closed disclosure that h and Enter open; escaped."""
    conv = page.locator("#conversation")
    expect(conv).to_be_visible()
    assert page.inner_text("#prompt-text") == msgs[-1]["content"]
    visible = page.locator("#conversation > .turn[data-role]")
    assert visible.count() == 3
    assert [visible.nth(i).get_attribute("data-role") for i in range(3)] == ["user", "assistant", "user"]
    earlier = page.locator("#earlier-turns")
    assert earlier.get_attribute("open") is None
    expect(earlier.locator(".turn").first).to_be_hidden()
    page.keyboard.press("h")
    expect(earlier.locator(".turn").first).to_be_visible()
    assert earlier.locator(".turn").count() == 5
    expect(earlier).to_contain_text(EVIL)  # shown as text, never as markup
    assert page.locator("#conversation b, #conversation img").count() == 0
    page.keyboard.press("h")
    expect(earlier.locator(".turn").first).to_be_hidden()
    page.focus("#earlier-turns summary")  # the disclosure itself works with the keyboard
    page.keyboard.press("Enter")
    expect(earlier.locator(".turn").first).to_be_visible()
    assert page.title() != "pwned"


def test_a_conversation_is_ranked_and_continued_by_keyboard(committed_db, live_server, page) -> None:
    convs = _setup(committed_db)
    page.goto(live_server.url + "/login")
    page.fill("#username", "lena")
    page.fill("#password", Factory.password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)
    page.goto(live_server.url + "/label")
    page.keyboard.press("n")  # the ranking queue has the higher priority
    page.wait_for_url("**/label/a/*")
    _check_conversation(page, convs["tides"])

    letters = page.eval_on_selector_all(".rank-card", "els => els.map(e => e.dataset.letter)")
    assert len(letters) == 4
    for i, letter in enumerate(letters):
        page.focus(f'.rank-card[data-letter="{letter}"]')
        page.keyboard.press(str(i + 1))
        page.focus(f'.rank-card[data-letter="{letter}"] input[value="1"]')
        page.keyboard.press("Space")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(live_server.url + "/label")
    [r] = _rows(Ranking)
    assert sorted(e.tier for e in r.entries) == [1, 2, 3, 4]

    page.keyboard.press("n")
    page.wait_for_url("**/label/a/*")
    _check_conversation(page, convs["comets"])
    page.focus("#text")
    page.keyboard.type("Comets warm up near the Sun.")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(live_server.url + "/label")
    [demo] = _rows(Demonstration)
    assert demo.text == "Comets warm up near the Sun."

    # Both labels leave in the contract layout, with the whole conversation.
    s = session_factory()()
    try:
        root = Path(create_export_batch(s, ExportFilters(), None).path)
        s.commit()
    finally:
        s.close()
    [sft] = [json.loads(x) for x in (root / "sft.jsonl").read_text().splitlines()]
    reply = {"role": "assistant", "content": "Comets warm up near the Sun."}
    assert sft["messages"] == [*convs["comets"], reply]
    [ranked] = [json.loads(x) for x in (root / "rankings.jsonl").read_text().splitlines()]
    assert ranked["messages"] == convs["tides"] and sorted(ranked["ranks"]) == [1, 2, 3, 4]
