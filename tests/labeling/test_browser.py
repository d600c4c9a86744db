"""The labeler's browser experience in Chromium against a live server; stored rows are checked."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db import session_factory
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling.models import Assignment
from app.rankings.models import Ranking
from app.rankings.service import letter as letter_of
from tests.factories import Factory

pytestmark = pytest.mark.browser


def _setup(committed_db, kind: TaskKind, k: int = 4, prompt_text: str | None = None,
           completion_text: str | None = None) -> tuple[Factory, Any]:
    f = Factory(committed_db)
    q = f.queue(kind, k=k, name=f"{kind.value} queue")
    t = f.task(q, f.prompt(q, prompt_text) if prompt_text else None)
    if completion_text:
        from app.rankings.models import Completion

        committed_db.query(Completion).filter_by(task_id=t.id, position=0).update({"text": completion_text})
    user = f.user("labeler", username="lena")
    committed_db.commit()
    return f, user


def _login_and_open(page, live_server) -> None:
    page.goto(live_server.url + "/login")
    page.fill("#username", "lena")
    page.fill("#password", Factory.password)
    page.click("button[type=submit]")
    page.goto(live_server.url + "/label")
    page.click("button[data-next]")
    page.wait_for_url("**/label/a/*")


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


def test_demonstration_draft_survives_reload_then_submits(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.demonstration, prompt_text="Explain tides to a child.")
    _login_and_open(page, live_server)
    assert page.inner_text("#prompt-text") == "Explain tides to a child."
    page.click("#text")
    page.keyboard.type("The moon pulls the sea.")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert "23 / " in page.inner_text("[data-count-for=text]")
    page.reload()
    assert page.input_value("#text") == "The moon pulls the sea."
    page.click("#text")
    page.keyboard.press("End")
    page.keyboard.type(" Twice a day.")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(live_server.url + "/label")
    [demo] = _rows(Demonstration)
    assert demo.text == "The moon pulls the sea. Twice a day."
    assert page.inner_text("#done-total") == "1"


def test_skip_with_a_draft_asks_first(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.demonstration)
    _login_and_open(page, live_server)
    page.click("#text")
    page.keyboard.type("Something")
    messages: list[str] = []
    page.once("dialog", lambda d: (messages.append(d.message), d.dismiss()))
    page.keyboard.press("Escape")
    page.locator("#text").blur()
    page.keyboard.press("s")
    page.select_option("#skip-reason", "Other")
    page.click("#skip-box button[type=submit]")
    assert messages and "discard your draft" in messages[0]
    assert _rows(Assignment)[0].status == "leased"  # dismissed: nothing happened
    page.once("dialog", lambda d: d.accept())
    page.click("#skip-box button[type=submit]")
    page.wait_for_url(live_server.url + "/label")
    [a] = _rows(Assignment)
    assert a.status == "skipped" and a.skip_reason == "Other"


def _cards(page) -> list[dict[str, Any]]:
    """The cards in page order: the letter shown and (from the database: the page is blind) the id."""
    letters = page.eval_on_selector_all(".rank-card", "els => els.map(e => e.dataset.letter)")
    aid = int(page.url.rstrip("/").rsplit("/", 1)[1])
    [a] = [a for a in _rows(Assignment) if a.id == aid]
    by_letter = {letter_of(i): cid for i, cid in enumerate(a.display_order)}
    return [{"cid": by_letter[x], "letter": x} for x in letters]


def _drag(page, letter: str, tier: int) -> None:
    """Press the card's handle, move the pointer over the tier until the card sits there, release.
    A drag that did not take (on a loaded machine the drag can start late) is made again, at most
    three times in all; the card must then be in the tier."""
    card = page.locator(f'.rank-board .rank-card[data-letter="{letter}"]:not(.sortable-fallback)')
    handle = card.locator(".drag-handle")
    target = page.locator(f'.tier-cards[data-tier="{tier}"]')
    for _attempt in range(3):
        handle.scroll_into_view_if_needed()
        hb = handle.bounding_box()
        assert hb
        page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
        page.mouse.down()
        page.mouse.move(hb["x"] + 12, hb["y"] + 12, steps=3)
        # The layout shifts while dragging (the card leaves its tier), so re-aim until it is there.
        for _ in range(6):
            tb = target.bounding_box()
            assert tb
            page.mouse.move(tb["x"] + tb["width"] / 2, tb["y"] + tb["height"] - 4, steps=6)
            if card.evaluate("e => e.closest('.tier-cards').dataset.tier") == str(tier):
                break
        page.mouse.up()
        if card.get_attribute("data-tier-now") == str(tier):
            break
    expect(card).to_have_attribute("data-tier-now", str(tier))


def _check_stored(
    expected_tiers: dict[int, int], likert: dict[int, int], flags: dict[int, list[str]]
) -> Ranking:
    [r] = _rows(Ranking)
    assert {e.completion_id: e.tier for e in r.entries} == expected_tiers
    assert {e.completion_id: e.likert for e in r.entries} == likert
    assert {e.completion_id: e.flags for e in r.entries} == {c: flags.get(c, []) for c in expected_tiers}
    return r


@pytest.mark.parametrize("k", [4, 9])
def test_rank_with_the_mouse_including_a_tie(committed_db, live_server, page, k) -> None:
    _setup(committed_db, TaskKind.ranking, k=k)
    page.set_viewport_size({"width": 1280, "height": 3200})  # the whole board in view while dragging
    _login_and_open(page, live_server)
    cards = _cards(page)
    assert len(cards) == k
    # A and B tie in tier 1; the rest get one tier each after them.
    plan = {c["letter"]: (1 if i < 2 else i) for i, c in enumerate(cards)}
    for letter, tier in plan.items():
        _drag(page, letter, tier)
    pairs = k * (k - 1) // 2 - 1
    assert page.inner_text("#pair-count") == str(pairs)
    for i, c in enumerate(cards):
        page.click(f'.rank-card[data-letter="{c["letter"]}"] .likert-opt:nth-of-type({i % 7 + 1}) span')
    b = cards[1]["letter"]
    page.click(f'.rank-card[data-letter="{b}"] .flags summary')
    page.check(f'.rank-card[data-letter="{b}"] input[value="hallucination"]')
    page.check(f'.rank-card[data-letter="{b}"] input[value="opinion"]')
    page.click("#task-form button[type=submit]")
    page.wait_for_url(live_server.url + "/label")
    r = _check_stored(
        {c["cid"]: plan[c["letter"]] for c in cards},
        {c["cid"]: i % 7 + 1 for i, c in enumerate(cards)},
        {cards[1]["cid"]: ["hallucination", "opinion"]},
    )
    assert r.display_order == [c["cid"] for c in cards]


@pytest.mark.parametrize("k", [4, 9])
def test_rank_with_the_keyboard_only(committed_db, live_server, page, k) -> None:
    _setup(committed_db, TaskKind.ranking, k=k)
    _login_and_open(page, live_server)
    cards = _cards(page)
    # Reverse order by number keys, then put the last two in a tie with arrows.
    plan = {c["letter"]: k - i for i, c in enumerate(cards)}
    for c in cards:
        page.focus(f'.rank-card[data-letter="{c["letter"]}"]')
        page.keyboard.press(str(plan[c["letter"]]) if plan[c["letter"]] < 10 else "9")
    first = cards[0]["letter"]  # in tier k: ArrowUp moves it to tier k-1, beside card B
    page.focus(f'.rank-card[data-letter="{first}"]')
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.dataset.letter") == first  # focus follows the card
    plan[first] = k - 1
    assert page.inner_text("#pair-count") == str(k * (k - 1) // 2 - 1)
    for i, c in enumerate(cards):
        page.focus(f'.rank-card[data-letter="{c["letter"]}"] input[value="1"]')
        page.keyboard.press("Space")
        for _ in range(i % 7):
            page.keyboard.press("ArrowRight")
    page.focus(f'.rank-card[data-letter="{first}"] .flags summary')
    page.keyboard.press("Enter")
    page.focus(f'.rank-card[data-letter="{first}"] input[value="fails_instruction"]')
    page.keyboard.press("Space")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(live_server.url + "/label")
    dense = {t: n + 1 for n, t in enumerate(sorted(set(plan.values())))}
    _check_stored(
        {c["cid"]: dense[plan[c["letter"]]] for c in cards},
        {c["cid"]: i % 7 + 1 for i, c in enumerate(cards)},
        {cards[0]["cid"]: ["fails_instruction"]},
    )


def test_html_and_script_in_prompt_and_completion_render_inert(committed_db, live_server, page) -> None:
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    _setup(committed_db, TaskKind.ranking, k=4, prompt_text=evil, completion_text=evil)
    _login_and_open(page, live_server)
    assert page.inner_text("#prompt-text") == evil
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#prompt-text b, #prompt-text img, .rank-card img").count() == 0
    assert evil in page.inner_text(".rank-board")


def test_ranking_works_with_javascript_off(committed_db, live_server, browser) -> None:
    _setup(committed_db, TaskKind.ranking, k=4)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        _login_and_open(page, live_server)
        cards = _cards(page)
        tiers = {c["cid"]: t for c, t in zip(cards, [2, 1, 2, 3], strict=True)}
        for c in cards:
            page.select_option(f'select[name="tier_{c["letter"]}"]', str(tiers[c["cid"]]))
            page.check(f'input[name="likert_{c["letter"]}"][value="5"]', force=True)
        page.click("#task-form button[type=submit]")
        page.wait_for_url(live_server.url + "/label")
        _check_stored(tiers, {c["cid"]: 5 for c in cards}, {})
    finally:
        context.close()


def test_touch_scrolls_the_page_except_on_the_drag_handle(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.ranking, k=4)
    _login_and_open(page, live_server)
    styles = page.eval_on_selector(".rank-card", """card => [getComputedStyle(card).touchAction,
        getComputedStyle(card.querySelector('.drag-handle')).touchAction]""")
    assert styles == ["auto", "none"]


def test_ranking_in_progress_survives_a_reload(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.ranking, k=4)
    _login_and_open(page, live_server)
    cards = _cards(page)
    page.focus(f'.rank-card[data-letter="{cards[2]["letter"]}"]')
    page.keyboard.press("1")
    page.click(f'.rank-card[data-letter="{cards[0]["letter"]}"] .likert-opt:nth-of-type(6) span')
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    page.reload()
    placed = page.locator(f'.rank-card[data-letter="{cards[2]["letter"]}"]')
    expect(placed).to_have_attribute("data-tier-now", "1")
    assert page.is_checked(f'input[name="likert_{cards[0]["letter"]}"][value="6"]')
    assert page.inner_text("#placed-count") == "1 of 4 ranked"
