"""The ranking page in Chromium: under 100 KB transferred in total (compressed), static assets
served from cache on the next task, and no layout shift while a card is dragged."""

from __future__ import annotations

import pytest

from app.auth.service import create_user
from app.enums import TaskKind
from tests.factories import Factory

PASSWORD = "weight-pass-123"
BUDGET = 100 * 1024


def _transfer_meter(page):  # type: ignore[no-untyped-def]
    """Sum of encodedDataLength over finished requests (bytes on the wire, headers included)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    sizes: dict[str, float] = {}
    urls: dict[str, str] = {}
    cached: set[str] = set()
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.requestServedFromCache", lambda e: cached.add(e["requestId"]))
    cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
    return sizes, urls, cached, cdp


@pytest.mark.browser
def test_ranking_page_weight_caching_and_no_layout_shift_while_dragging(live_server, committed_db, page,
                                                                         record_property) -> None:
    f = Factory(committed_db)
    q = f.queue(TaskKind.ranking, k=4)
    long = "The answer explains the idea step by step with an example and a short summary. " * 12
    for _ in range(2):
        f.task(q)  # completions get realistic lengths below
    from sqlalchemy import update

    from app.rankings.models import Completion

    committed_db.execute(update(Completion).values(text=Completion.text + " " + long))
    create_user(committed_db, "weigher", PASSWORD, ["labeler"])
    committed_db.commit()
    url = live_server.url
    page.goto(url + "/login")
    page.fill("input[name=username]", "weigher")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")

    page.goto(url + "/label")
    page.locator("form[action='/label/next'] button[type=submit]").first.click()
    page.wait_for_url(url + "/label/a/*")
    sizes, urls, cached, cdp = _transfer_meter(page)
    cdp.send("Network.clearBrowserCache")  # a cold first visit: every asset travels
    page.reload()
    page.wait_for_load_state("networkidle")
    first = {urls.get(r, r): n for r, n in sizes.items()}
    task_page = next(n for u, n in first.items() if "/label/a/" in u)
    total = sum(n for u, n in first.items() if "/label/a/" in u or "/static/" in u)
    record_property("ranking_page_transfer_bytes", total)
    print(f"ranking page: {total / 1024:.1f} KB transferred (document {task_page / 1024:.1f} KB); "
          + ", ".join(f"{u.rsplit('/', 1)[-1].split('?')[0]} {n / 1024:.1f} KB" for u, n in first.items()))
    assert total < BUDGET, f"{total} bytes"
    assert any("/static/" in u for u in first)  # the assets were counted

    # The next visit: every fingerprinted asset comes from the cache, only the document travels.
    sizes.clear()
    urls.clear()
    cached.clear()
    page.goto(page.url)
    page.wait_for_load_state("networkidle")
    statics = [r for r, u in urls.items() if "/static/" in u]
    assert statics and all(r in cached or sizes.get(r, 0) == 0 for r in statics), (
        [(urls[r], sizes.get(r)) for r in statics])

    # Drag card A by its handle into tier 1: nothing outside the board moves, no unexpected shift.
    page.evaluate("""() => { window.__shifts = [];
        new PerformanceObserver(l => l.getEntries().forEach(e => window.__shifts.push(
            {value: e.value, input: e.hadRecentInput})))
          .observe({type: 'layout-shift', buffered: false}); }""")
    prompt_box = page.locator("#prompt-text").bounding_box()
    board_box = page.locator("[data-rank-board]").bounding_box()
    handle = page.locator(".tier.pool .rank-card .drag-handle").first
    target = page.locator(".tier-cards[data-tier='1']")
    hb, tb = handle.bounding_box(), target.bounding_box()
    assert hb and tb and prompt_box and board_box
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(tb["x"] + 30, tb["y"] + tb["height"] / 2, steps=12)
    page.wait_for_timeout(200)
    mid_prompt = page.locator("#prompt-text").bounding_box()
    mid_board = page.locator("[data-rank-board]").bounding_box()
    page.mouse.up()
    page.wait_for_timeout(300)
    shifts = page.evaluate("window.__shifts")
    assert mid_prompt == prompt_box and mid_board and mid_board["y"] == board_box["y"]
    unexpected = sum(s["value"] for s in shifts if not s["input"])
    record_property("drag_unexpected_layout_shift", unexpected)
    assert unexpected == 0, shifts
    assert page.locator(".tier-cards[data-tier='1'] .rank-card").count() == 1  # the drag did place it
