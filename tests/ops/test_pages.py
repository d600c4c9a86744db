"""The ops console pages: runs list, live run page, versions with win-rates, workers; access by role."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from app.db import utcnow
from app.enums import TaskKind
from app.labeling.models import Assignment
from app.policies import service as registry
from app.rankings.models import Completion, Ranking, RankingEntry
from app.system.models import WorkerHeartbeat
from tests.ops.conftest import add_log, add_series, make_run, policy

POLL = 'hx-trigger="every 2s"'


def test_ops_page_lists_runs_with_parent_workers_queues_and_the_form(
    db, factory, login, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    parent = policy(factory, tmp_path, "base-v0", is_deployed=True)
    run = make_run(db, parent_policy_id=parent.id, progress=0.4)
    run.stages[0].status = "succeeded"
    done = make_run(db, status="succeeded", finished_at=utcnow())
    db.add(
        WorkerHeartbeat(
            node="gpu@box", pid=7, queues=["training"], doing={"task": "runs.run_round", "args": [run.id]}
        )
    )
    db.flush()
    web = login("ops")
    page = web.get("/ops")
    assert page.status_code == 200
    html = page.text
    assert f'href="/ops/runs/{run.id}"' in html and f'href="/ops/runs/{done.id}"' in html
    assert 'class="badge status-running"' in html and 'class="badge status-succeeded"' in html
    assert "base-v0" in html and 'value="0.400"' in html
    assert 'hx-get="/ops?part=runs"' in html  # a live round keeps the list fresh
    assert "gpu@box" in html and f"runs.run_round ({run.id})" in html and ">up<" in html
    assert 'id="queue-training"' in html
    # The form: parent defaults to the deployed policy, settings prefilled from the quick preset.
    assert f'<option value="{parent.id}" selected>base-v0 (deployed)</option>' in html
    assert "&#34;epochs&#34;: 4" in html or '"epochs": 4' in html
    fragment = web.get("/ops?part=runs").text
    assert "<html" not in fragment and 'id="runs"' in fragment and 'id="workers"' not in fragment
    workers = web.get("/ops?part=workers").text
    assert "<html" not in workers and 'id="workers"' in workers and 'id="runs"' not in workers
    assert 'hx-trigger="every 10s"' in html and "gpu@box" in workers


def test_runs_list_stops_refreshing_when_nothing_is_live(db, login) -> None:  # type: ignore[no-untyped-def]
    make_run(db, status="failed", error="boom", error_stage="sft")
    html = login("ops").get("/ops").text
    assert 'hx-get="/ops?part=runs"' not in html


def test_live_run_page_polls_and_shows_progress_curves_and_log(db, factory, login, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    parent = policy(factory, tmp_path, "parent-p")
    run = make_run(
        db,
        parent_policy_id=parent.id,
        progress=0.5,
        current_stage="reward",
        started_at=utcnow() - timedelta(seconds=60),
    )
    run.stages[0].status, run.stages[0].progress = "succeeded", 1.0
    run.stages[1].status, run.stages[1].progress, run.stages[1].step, run.stages[1].total_steps = (
        "running",
        0.25,
        5,
        20,
    )
    add_series(db, run, "sft", "loss", [2.0, 1.5, 1.2])
    add_series(db, run, "reward", "accuracy", [0.5, 0.6])
    add_log(db, run, "epoch 1 <b>done</b>", stage="sft")
    web = login("ops")
    html = web.get(f"/ops/runs/{run.id}").text
    assert POLL in html and f'hx-get="/ops/runs/{run.id}?part=live"' in html
    assert '<progress id="stage-sft" max="1" value="1.000">' in html
    assert "Reward model — running, step 5 of 20 (25 %)" in html
    assert 'id="run-eta"' in html and "parent-p" in html
    assert html.count("<polyline") == 2 and ">Loss<" in html and ">RM accuracy on training batches<" in html
    assert "epoch 1 &lt;b&gt;done&lt;/b&gt;" in html and "<b>done</b>" not in html
    assert 'id="cancel-run"' in html and "data-confirm=" in html and 'id="resume-run"' not in html
    fragment = web.get(f"/ops/runs/{run.id}?part=live").text
    assert "<html" not in fragment and fragment.lstrip().startswith('<div id="run-live"') and POLL in fragment


def test_finished_run_page_stops_polling(db, login) -> None:  # type: ignore[no-untyped-def]
    run = make_run(db, status="succeeded", progress=1.0, finished_at=utcnow())
    web = login("ops")
    html = web.get(f"/ops/runs/{run.id}").text
    assert POLL not in html and "hx-get" not in html
    assert 'id="cancel-run"' not in html
    # The last poll of a round that just ended returns a fragment without the trigger: polling stops.
    assert POLL not in web.get(f"/ops/runs/{run.id}?part=live").text


def test_failed_run_shows_its_error_with_the_stage_and_offers_resume(db, login) -> None:  # type: ignore[no-untyped-def]
    run = make_run(db, status="failed", error="CUDA <oom>", error_stage="ppo", finished_at=utcnow())
    html = login("ops").get(f"/ops/runs/{run.id}").text
    assert "Failed in ppo" in html and "CUDA &lt;oom&gt;" in html
    assert 'id="resume-run"' in html and 'id="cancel-run"' not in html and POLL not in html


def test_dead_worker_shows_as_failed_once_the_scheduler_reaps_it(db, login) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import event

    from app.runs.tasks import reap_stale

    run = make_run(db, current_stage="sft", heartbeat_at=utcnow() - timedelta(minutes=10))
    run.stages[0].status = "running"
    web = login("ops")
    writes: list[str] = []

    def statement(_conn, _cursor, sql: str, *_) -> None:  # type: ignore[no-untyped-def]
        if sql.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(sql)

    connection = db.connection()
    event.listen(connection, "before_cursor_execute", statement)
    try:
        for path in (f"/ops/runs/{run.id}", "/ops", f"/ops/runs/{run.id}?part=live"):
            assert web.get(path).status_code == 200
    finally:
        event.remove(connection, "before_cursor_execute", statement)
    assert writes == []  # pages only read: reaping is the scheduler's job
    from app.runs import service as runs

    assert runs.reap_stale_runs(db) == [run.id] and reap_stale.name == "runs.reap_stale"
    html = web.get(f"/ops/runs/{run.id}").text
    assert "Failed in sft" in html and "stopped responding" in html and POLL not in html


def test_unknown_run_is_404(login) -> None:  # type: ignore[no-untyped-def]
    resp = login("ops").get("/ops/runs/987654")
    assert resp.status_code == 404 and "No such training round." in resp.text


def _ranking(db, factory, labeler, new_id: int, parent_id: int, tiers: list[int]) -> None:  # type: ignore[no-untyped-def]
    queue = factory.queue(TaskKind.ranking, k=4)
    task = factory.task(queue, completions=0)
    comps = [
        Completion(
            task_id=task.id,
            prompt_id=task.prompt_id,
            position=i,
            text=f"c{i}",
            policy_version_id=new_id if i < 2 else parent_id,
        )
        for i in range(4)
    ]
    db.add_all(comps)
    db.flush()
    a = Assignment(task_id=task.id, user_id=labeler.id, status="submitted", lease_expires_at=utcnow())
    db.add(a)
    db.flush()
    r = Ranking(assignment_id=a.id, task_id=task.id, user_id=labeler.id)
    r.entries = [RankingEntry(completion_id=c.id, tier=t) for c, t in zip(comps, tiers, strict=True)]
    db.add(r)
    db.flush()


def test_versions_page_shows_lineage_metrics_and_win_rate_against_parent(
    db, factory, login, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    base = policy(factory, tmp_path, "base", is_deployed=True)
    run = make_run(db, status="succeeded")
    child = policy(
        factory, tmp_path, "ppo-r1", parent_id=base.id, run_id=run.id, metrics={"rm_score": 0.4215, "kl": 3.5}
    )
    rm = factory.model_version("reward", name="rm-r1", parent_id=base.id)
    labeler = factory.user("labeler")
    _ranking(db, factory, labeler, child.id, base.id, [1, 2, 3, 4])  # 4 wins
    _ranking(db, factory, labeler, child.id, base.id, [2, 1, 1, 3])  # win, loss, tie, win
    web = login("ops")
    html = web.get("/ops/versions").text
    assert f'id="v{child.id}"' in html and f'href="#v{base.id}">base</a>' in html
    assert f'href="/ops/runs/{run.id}"' in html and "rm_score" in html and "0.421" in html
    assert "deployed</span>" in html and 'id="rollback"' not in html  # deployed, but never replaced one
    # 6 wins, 1 loss, 1 tie: 86 % of 7 decided comparisons.
    assert "<strong>86 %</strong>" in html and "n = 7, 1 ties" in html
    assert html.count('class="rate-dot"') == 1 and "<title>ppo-r1</title>" in html
    assert f'id="deploy-{child.id}"' in html and f'id="deploy-{base.id}"' not in html
    assert f'id="deploy-{rm.id}"' not in html


def test_a_rounds_ppo_policy_is_compared_with_the_policy_the_round_started_from(
    db, factory, login, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Its parent is the round's SFT policy, but the gate and the sampling mix compare it with the start."""
    start = policy(factory, tmp_path, "start", is_deployed=True)
    run = make_run(db, status="succeeded", parent_policy_id=start.id)
    sft = policy(factory, tmp_path, "sft-r1", parent_id=start.id, run_id=run.id)
    ppo = policy(factory, tmp_path, "ppo-r1", parent_id=sft.id, run_id=run.id)
    _ranking(db, factory, factory.user("labeler"), ppo.id, start.id, [1, 1, 2, 2])  # 4 wins of 4
    html = login("ops").get("/ops/versions").text
    row = html[html.index(f'id="v{ppo.id}"') :]
    row = row[: row.index("</tr>")]
    assert "<strong>100 %</strong>" in row and "n = 4" in row and "vs start" in row


def test_access_by_role(db, factory, login, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = policy(factory, tmp_path, "acc-a"), policy(factory, tmp_path, "acc-b")
    registry.deploy(db, a.id)
    registry.deploy(db, b.id)
    ops_view = login("ops").get("/ops/versions").text
    assert 'id="rollback"' in ops_view and f'id="deploy-{a.id}"' in ops_view
    admin = login("admin")
    assert admin.get("/ops").status_code == 403
    versions = admin.get("/ops/versions")
    assert versions.status_code == 200 and "Model versions" in versions.text
    assert 'id="rollback"' not in versions.text and "deploy-" not in versions.text
    assert "It replaced acc-a." in versions.text
    assert admin.post("/ops/rollback").status_code == 403
    labeler = login("labeler")
    assert labeler.get("/ops/versions").status_code == 403
    assert labeler.get("/ops/runs/1").status_code == 403
    assert ">Ops<" in login("ops").get("/").text


def test_metric_charts_put_the_watched_curves_first_with_readable_titles() -> None:
    from app.ops.service import metric_charts
    from app.runs.pages import Series

    groups = metric_charts(
        [
            Series("ppo", "epoch", [(0, 1.0)]),
            Series("ppo", "kl", [(0, 0.0), (1, 0.5)]),
            Series("sft", "loss", [(0, 2.0)]),
            Series("ppo", "reward", [(0, 0.1)]),
        ],
        ["sft", "reward", "ppo", "evaluate"],
    )
    assert [g.stage for g in groups] == ["sft", "ppo"]
    assert [c.name for c in groups[1].charts] == ["Reward (RM score)", "KL from the parent", "Epoch"]
    assert groups[1].charts[1].last == "0.5 at step 1"
