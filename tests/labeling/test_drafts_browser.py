"""Nothing typed or moved is lost (quick reload, closed tab, offline), second tabs are told the
truth, and over-long text is refused with a reason, never cut: Chromium against a live server."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from app.db import session_factory
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling.models import Assignment
from app.rankings.models import Ranking
from tests.labeling.test_browser import _cards, _drag, _login_and_open, _rows, _setup

pytestmark = pytest.mark.browser

TEXT = "The moon pulls on the sea, so the water rises and falls twice every day!!"  # 73 characters


def _assignment() -> Assignment:
    [a] = _rows(Assignment)
    return a


def _wait_for(predicate, seconds: float = 8.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_typing_then_reloading_within_300_ms_loses_nothing(committed_db, live_server, page) -> None:
    assert len(TEXT) == 73
    _setup(committed_db, TaskKind.demonstration)
    _login_and_open(page, live_server)
    page.click("#text")
    page.keyboard.type(TEXT)
    t0 = time.monotonic()
    page.reload()
    assert time.monotonic() - t0 < 5  # the reload itself was asked for at once after the last key
    assert page.input_value("#text") == TEXT
    expect(page.locator("#draft-status")).to_contain_text("Draft saved")
    assert _wait_for(lambda: _assignment().draft_text == TEXT)


def test_reload_is_started_within_300_ms_of_the_last_key(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.demonstration)
    _login_and_open(page, live_server)
    page.click("#text")
    # Type and reload from inside the page: the reload starts 300 ms after the last keystroke's input.
    page.evaluate("""text => new Promise(done => {
        const box = document.getElementById('text');
        for (const ch of text) { box.value += ch; box.dispatchEvent(new Event('input', {bubbles: true})); }
        setTimeout(() => { location.reload(); done(); }, 300);
    })""", TEXT)
    page.wait_for_load_state("load")
    expect(page.locator("#text")).to_have_value(TEXT)
    assert _wait_for(lambda: _assignment().draft_text == TEXT)


def test_offline_copy_is_restored_and_the_page_says_so(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.demonstration)
    _login_and_open(page, live_server)
    url = page.url
    # As if the browser crashed: no beacon on the way out, only the copy in this browser's storage.
    page.add_init_script("navigator.sendBeacon = () => false;")
    page.reload()
    page.context.set_offline(True)
    page.click("#text")
    page.keyboard.type("Written while the connection was down.")
    expect(page.locator("#draft-status")).to_contain_text("Not saved")
    page.close()
    assert _assignment().draft_text == ""
    page2 = page.context.new_page()
    page.context.set_offline(False)
    page2.goto(url)
    expect(page2.locator("#text")).to_have_value("Written while the connection was down.")
    expect(page2.locator("#draft-restored")).to_contain_text("Restored your unsaved changes")
    assert _wait_for(lambda: _assignment().draft_text == "Written while the connection was down.")
    page2.reload()  # stored now: nothing to restore, nothing said
    expect(page2.locator("#draft-status")).to_contain_text("Draft saved")


def test_closing_the_tab_right_after_a_drop_keeps_the_move(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.ranking, k=4)
    page.set_viewport_size({"width": 1280, "height": 3200})
    _login_and_open(page, live_server)
    url, context = page.url, page.context
    cards = _cards(page)
    _drag(page, cards[2]["letter"], 1)
    page.close()  # well within the 0.6 s autosave delay
    letter = cards[2]["letter"]

    def stored() -> bool:
        draft = _assignment().draft_text
        return bool(draft) and json.loads(draft)["entries"].get(letter, {}).get("tier") == 1

    assert _wait_for(stored)
    page2 = context.new_page()
    page2.goto(url)
    expect(page2.locator(f'.rank-card[data-letter="{letter}"]')).to_have_attribute("data-tier-now", "1")


def test_a_second_tab_is_told_its_ranking_was_not_stored(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.ranking, k=4)
    _login_and_open(page, live_server)
    other = page.context.new_page()
    other.goto(page.url)
    cards = _cards(page)
    for tab, order in ((page, [1, 2, 3, 4]), (other, [4, 3, 2, 1])):
        for c, tier in zip(cards, order, strict=True):
            tab.focus(f'.rank-card[data-letter="{c["letter"]}"]')
            tab.keyboard.press(str(tier))
            tab.check(f'input[name="likert_{c["letter"]}"][value="4"]', force=True)
    page.click("#task-form button[type=submit]")
    page.wait_for_url(live_server.url + "/label")
    expect(page.locator("[role=status]").first).to_contain_text("Ranking saved")
    other.click("#task-form button[type=submit]")
    other.wait_for_url(live_server.url + "/label")
    message = other.locator("[role=status]").first
    expect(message).to_contain_text("already submitted")
    expect(message).to_contain_text("was not stored")
    assert "Ranking saved" not in message.inner_text()
    [r] = _rows(Ranking)
    assert {e.completion_id: e.tier for e in r.entries} == {c["cid"]: i + 1 for i, c in enumerate(cards)}


def test_an_overlong_paste_is_kept_whole_and_refused_with_a_reason(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.demonstration)
    _login_and_open(page, live_server)
    long_text = ("All work and no play. " * 1200)[:26_399] + "!"
    page.click("#text")
    page.keyboard.insert_text(long_text)  # what a paste does
    assert len(page.input_value("#text")) == 26_400  # nothing cut
    counter = page.locator("[data-count-for=text]")
    expect(counter).to_contain_text("6400 over the limit")
    page.keyboard.press("Control+Enter")
    page.wait_for_timeout(500)
    assert "/label/a/" in page.url and len(page.input_value("#text")) == 26_400
    # The server refuses it too (a post without the page's script), saying why, and stores nothing.
    status, body = page.evaluate("""async text => {
        const form = document.getElementById('task-form');
        const data = new FormData(form); data.set('text', text);
        const r = await fetch(form.action, {method: 'POST', body: data});
        return [r.status, await r.text()];
    }""", long_text)
    assert status == 422 and "26400 characters long; the limit is 20000" in body
    s = session_factory()()
    try:
        assert s.query(Demonstration).count() == 0
    finally:
        s.close()


def test_an_unsent_ranking_move_is_restored_from_the_browser(committed_db, live_server, page) -> None:
    _setup(committed_db, TaskKind.ranking, k=4)
    _login_and_open(page, live_server)
    url = page.url
    page.add_init_script("navigator.sendBeacon = () => false;")  # as if the browser crashed
    page.reload()
    cards = _cards(page)
    page.context.set_offline(True)
    page.focus(f'.rank-card[data-letter="{cards[1]["letter"]}"]')
    page.keyboard.press("2")
    page.check(f'input[name="likert_{cards[1]["letter"]}"][value="6"]', force=True)
    page.close()
    assert _assignment().draft_text == ""
    page2 = page.context.new_page()
    page.context.set_offline(False)
    page2.goto(url)
    card = page2.locator(f'.rank-card[data-letter="{cards[1]["letter"]}"]')
    expect(card).to_have_attribute("data-tier-now", "2")
    assert page2.is_checked(f'input[name="likert_{cards[1]["letter"]}"][value="6"]')
    expect(page2.locator("#draft-restored")).to_contain_text("Restored your unsaved changes")
    assert page2.inner_text("#placed-count") == "1 of 4 ranked"

    def stored() -> bool:
        draft = _assignment().draft_text
        return bool(draft) and json.loads(draft)["entries"].get(cards[1]["letter"], {}).get("tier") == 2

    assert _wait_for(stored)
