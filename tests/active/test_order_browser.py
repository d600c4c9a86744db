"""A queue in uncertainty order in Chromium: the admin sees the scores, a labeler gets the most uncertain."""

from __future__ import annotations

import pytest

from app.enums import TaskKind
from app.policies.models import ModelVersion
from tests.factories import Factory

pytestmark = pytest.mark.browser


def _sign_in(page, url: str, username: str) -> None:
    page.goto(url + "/login")
    page.fill("#username", username)
    page.fill("#password", Factory.password)
    page.click("button[type=submit]")


def test_uncertain_task_first_and_its_score_shown(committed_db, live_server, page, browser) -> None:
    f = Factory(committed_db)
    q = f.queue(TaskKind.ranking, k=4, name="active queue", task_order="uncertainty")
    rm = ModelVersion(name="rm-browser", kind="reward", path="/nowhere", manifest={}, metrics={})
    committed_db.add(rm)
    committed_db.flush()
    f.task(q, f.prompt(q, "A sure one."), uncertainty=0.05, scored_by_id=rm.id)
    f.task(q, f.prompt(q, "An unscored one."))
    f.task(q, f.prompt(q, "The most uncertain one."), uncertainty=0.93, scored_by_id=rm.id)
    f.user("admin", username="ada")
    f.user("labeler", username="lena")
    committed_db.commit()

    _sign_in(page, live_server.url, "ada")
    page.goto(f"{live_server.url}/admin/queues/{q.id}")
    rows = page.locator("[data-lease-order] tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).locator("[data-uncertainty]").inner_text() == "0.930"
    assert rows.nth(1).locator("[data-uncertainty]").inner_text() == "0.050"
    assert rows.nth(2).locator("[data-uncertainty]").inner_text() == "not scored"
    assert "rm-browser" in rows.nth(0).inner_text()

    labeler = browser.new_context().new_page()
    _sign_in(labeler, live_server.url, "lena")
    labeler.goto(live_server.url + "/label")
    labeler.focus("button[data-next]")
    labeler.keyboard.press("Enter")
    labeler.wait_for_url("**/label/a/*")
    assert labeler.inner_text("#prompt-text") == "The most uncertain one."
    labeler.context.close()
