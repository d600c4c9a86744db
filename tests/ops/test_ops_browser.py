"""The console in Chromium: a live run page that refreshes itself with charts, and a confirmed rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.db import utcnow
from app.policies import service as registry
from app.runs.models import RunStage, TrainingRun
from tests.factories import Factory
from tests.ops.conftest import add_log, add_series, make_run, model_dir
from training.config import PRESETS

pytestmark = pytest.mark.browser


def _sign_in(page, url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/login")
    page.fill("#username", username)
    page.fill("#password", Factory.password)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_run_page_updates_live_then_stops_and_versions_rollback_confirms(  # type: ignore[no-untyped-def]
    committed_db, live_server, page, tmp_path: Path
) -> None:
    db = committed_db
    f = Factory(db)
    f.user("ops", username="ops_browser")
    a = f.model_version("policy", name="browser-a", path=str(model_dir(tmp_path, "a")))
    b = f.model_version("policy", name="browser-b", path=str(model_dir(tmp_path, "b")), parent_id=a.id)
    registry.deploy(db, a.id)
    registry.deploy(db, b.id)
    run = make_run(db, parent_policy_id=a.id, progress=0.3, current_stage="sft")
    run.stages[0].status, run.stages[0].step, run.stages[0].total_steps = "running", 3, 20
    add_series(db, run, "sft", "loss", [2.0, 1.6, 1.3, 1.1])
    add_series(db, run, "sft", "response_length", [12, 14, 15, 15])
    add_log(db, run, "sft epoch 1 started", stage="sft")
    db.commit()
    run_id = run.id

    _sign_in(page, live_server.url, "ops_browser")
    page.goto(f"{live_server.url}/ops/runs/{run_id}")
    assert page.locator("#run-live svg polyline").count() == 2
    assert page.locator("#run-live figcaption").first.inner_text().startswith("Loss: 1.1 at step 3")
    assert page.get_by_label("SFT — running, step 3 of 20 (0 %)").count() == 1

    # The worker records progress: the page shows it without a reload, and keyboard focus stays put.
    page.focus("#cancel-run")
    stage = db.get(RunStage, run.stages[0].id)
    assert stage is not None
    stage.step, stage.progress = 10, 0.5
    add_series(db, run, "sft", "kl", [0.0, 0.2])
    db.commit()
    page.get_by_text("SFT — running, step 10 of 20 (50 %)").wait_for()
    page.locator("#run-live svg polyline").nth(2).wait_for()
    assert page.locator("#run-live[hx-trigger]").count() == 1
    assert page.evaluate("document.activeElement.id") == "cancel-run"

    # The round ends: the next poll returns a fragment without a trigger, so polling stops.
    live = db.get(TrainingRun, run_id)
    assert live is not None
    live.status, live.progress, live.finished_at = "succeeded", 1.0, utcnow()
    db.commit()
    page.locator("#run-status", has_text="succeeded").wait_for()
    assert page.locator("#run-live[hx-trigger]").count() == 0
    assert page.locator("#cancel-run").count() == 0

    # Rollback: dismissing the confirmation changes nothing; accepting it rolls back.
    page.goto(f"{live_server.url}/ops/versions")
    assert "browser-b" in page.locator("#deployed-now").inner_text()
    assert page.locator("svg.rate-chart").count() == 1
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Roll back to browser-a").click()
    assert "browser-b" in page.locator("#deployed-now").inner_text()
    messages: list[str] = []
    page.on("dialog", lambda d: (messages.append(d.message), d.accept()))
    page.get_by_role("button", name="Roll back to browser-a").click()
    page.locator("#deployed-now", has_text="browser-a").wait_for()
    assert messages and messages[0].startswith("Roll back from browser-b to browser-a?")
    assert page.url == f"{live_server.url}/ops/versions"
    assert page.locator("table.history tbody tr").count() == 3  # two deploys, one rollback: no more

    # The round form: choosing a preset refills the per-stage settings.
    page.goto(f"{live_server.url}/ops")
    assert '"epochs": 4' in page.input_value("#settings_sft")
    page.select_option("#preset", "paper")
    assert page.input_value("#settings_sft") == "{}"  # the paper's numbers are the library's defaults
    assert json.loads(page.input_value("#settings_ppo")) == PRESETS["paper"]["ppo"]  # + checkpoints
    assert page.errors == []  # type: ignore[attr-defined]
