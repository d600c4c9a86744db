"""The ranking board on a 1280x800 laptop screen: every card and tier reachable by a short drag,
a side-by-side reading view, Markdown rendered safely with a raw-text toggle (Chromium).

With SCREENSHOT_DIR set, the K = 4 and K = 9 boards are saved there (docs/ holds the README's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from app.enums import TaskKind
from app.rankings.models import Completion
from tests.factories import Factory
from tests.labeling.test_browser import _cards, _check_stored, _login_and_open

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1280, "height": 800}

ANSWERS = [
    "Tides come from the **moon's gravity** pulling on the oceans. The side facing the moon bulges, "
    "and so does the far side, so most coasts see two high tides a day.",
    "Here is a short program:\n\n```python\nfor day in range(2):\n    print('high tide', day)\n```\n\n"
    "It prints twice, like the tides.",
    "1. The moon pulls the water.\n2. The earth turns under the bulge.\n3. The sun adds a little "
    "(spring and neap tides).",
    "Tides are caused by wind. " * 6,
    "I don't know.",
    "The sea goes up and down because the moon and the sun pull on it; `high` and `low` tide "
    "follow each other about every 6 hours and 12 minutes. " * 2,
    "> Time and tide wait for no man.\n\nThat is all I can say about tides.",
    "Gravity from the moon, mostly. The sun's effect is about half as strong. " * 3,
    "Tides are a kind of weather.",
]


def _setup_board(committed_db, k: int) -> None:
    f = Factory(committed_db)
    q = f.queue(TaskKind.ranking, k=k, name="ranking queue")
    t = f.task(q, f.prompt(q, "Explain tides to a child."))
    for c in committed_db.query(Completion).filter_by(task_id=t.id):
        c.text = ANSWERS[c.position]
    f.user("labeler", username="lena")
    committed_db.commit()


def _in_view(box: dict[str, float] | None) -> bool:
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"]


def _short_drag(page, letter: str, tier: int) -> float:
    """Drag a card to a tier with both on screen at once (no page autoscroll); the distance moved."""
    card = page.locator(f'.rank-board .rank-card[data-letter="{letter}"]:not(.sortable-fallback)')
    handle = card.locator(".drag-handle")
    target = page.locator(f'.tier-cards[data-tier="{tier}"]')
    scroll_y = page.evaluate("window.scrollY")
    handle.scroll_into_view_if_needed()
    target.scroll_into_view_if_needed()
    assert abs(page.evaluate("window.scrollY") - scroll_y) <= 8  # only the board's own columns scrolled
    hb, tb = handle.bounding_box(), target.bounding_box()
    assert _in_view(hb) and hb and tb and tb["y"] >= 0 and tb["y"] + 8 <= LAPTOP["height"]
    distance = abs(tb["y"] + min(tb["height"], 40) / 2 - hb["y"])
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(hb["x"] + 12, hb["y"] + 12, steps=3)
    for _ in range(6):
        tb = target.bounding_box()
        assert tb
        empty = target.evaluate("e => e.querySelectorAll('.rank-card:not(.is-ghost)').length === 0")
        y = tb["y"] + (tb["height"] / 2 if empty else tb["height"] - 5)
        page.mouse.move(tb["x"] + tb["width"] / 2, y, steps=6)
        if card.evaluate("e => e.closest('.tier-cards').dataset.tier") == str(tier):
            break
    page.mouse.up()
    expect(card).to_have_attribute("data-tier-now", str(tier))
    return distance


@pytest.mark.parametrize("k", [4, 9])
def test_every_card_and_tier_fit_a_laptop_screen_and_rank_by_short_drags(
    committed_db, live_server, page, k
) -> None:
    _setup_board(committed_db, k)
    page.set_viewport_size(LAPTOP)
    _login_and_open(page, live_server)
    page.evaluate("document.querySelector('.rank-status').scrollIntoView({block: 'start'})")
    board = page.locator("[data-rank-board]").bounding_box()
    assert board and board["height"] <= LAPTOP["height"]
    for t in range(1, k + 1):  # every tier's drop zone is on screen together with the pool
        assert _in_view(page.locator(f'.tier-cards[data-tier="{t}"]').bounding_box()), t
    assert _in_view(page.locator('.tier-cards[data-tier="0"] .rank-card .drag-handle').first.bounding_box())
    cards = _cards(page)
    plan = {c["letter"]: (1 if i < 2 else i) for i, c in enumerate(cards)}
    distances = []
    for i, (letter, tier) in enumerate(plan.items()):
        distances.append(_short_drag(page, letter, tier))
        if i == k // 2 and os.environ.get("SCREENSHOT_DIR"):
            Path(os.environ["SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
            page.wait_for_timeout(500)  # the drop animation settles
            page.screenshot(path=f"{os.environ['SCREENSHOT_DIR']}/ranking-board-k{k}.png")
    assert max(distances) < LAPTOP["height"]
    for i, c in enumerate(cards):
        card = page.locator(f'.rank-card[data-letter="{c["letter"]}"]')
        card.locator(f".likert-opt:nth-of-type({i % 7 + 1}) span").click()
    page.click("#task-form button[type=submit]")
    page.wait_for_url(live_server.url + "/label")
    _check_stored({c["cid"]: plan[c["letter"]] for c in cards},
                  {c["cid"]: i % 7 + 1 for i, c in enumerate(cards)}, {})


def test_markdown_renders_escaped_with_a_raw_toggle_and_a_reading_view(
    committed_db, live_server, page
) -> None:
    _setup_board(committed_db, 4)
    page.set_viewport_size(LAPTOP)
    _login_and_open(page, live_server)
    code = page.locator(".rank-card .completion-md pre code")
    expect(code).to_have_count(1)
    assert "print('high tide', day)" in code.inner_text()
    assert page.locator(".rank-card .completion-md strong").count() >= 1
    assert page.locator(".completion-raw").first.is_hidden()
    page.check("#raw-toggle")
    expect(page.locator(".completion-md").first).to_be_hidden()
    raw = page.locator(".completion-raw").all_inner_texts()
    assert any("```python" in r for r in raw) and any("**moon's gravity**" in r for r in raw)
    page.uncheck("#raw-toggle")
    # The reading view: every completion in full, side by side, by keyboard.
    page.locator(".rank-card").first.focus()
    page.keyboard.press("r")
    reader = page.locator("#reader")
    expect(reader).to_be_visible()
    cols = reader.locator(".reader-col")
    expect(cols).to_have_count(4)
    assert [h.split(" ")[0] for h in cols.locator("h3").all_inner_texts()] == ["A", "B", "C", "D"]
    boxes = [cols.nth(i).bounding_box() for i in range(2)]
    assert boxes[0] and boxes[1] and boxes[1]["x"] > boxes[0]["x"] and abs(boxes[1]["y"] - boxes[0]["y"]) < 2
    page.keyboard.press("Escape")
    expect(reader).to_be_hidden()
