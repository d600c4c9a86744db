"""Console actions as plain form posts: cancel, resume, approve, deploy, rollback, start a round."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from app.exports.models import ExportBatch
from app.policies import service as registry
from app.policies.models import Deployment
from app.runs.models import TrainingRun
from tests.ops.conftest import make_run, policy


def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return int(db.scalar(select(func.count()).select_from(model)))


def test_cancel_a_running_round_asks_the_worker_and_a_queued_one_stops_at_once(db, login) -> None:  # type: ignore[no-untyped-def]
    web = login("ops")
    running, queued = make_run(db), make_run(db, status="queued")
    resp = web.post(f"/ops/runs/{running.id}/cancel")
    assert resp.status_code == 303 and resp.headers["location"] == f"/ops/runs/{running.id}"
    db.refresh(running)
    assert running.cancel_requested and running.status == "running"
    web.post(f"/ops/runs/{queued.id}/cancel")
    db.refresh(queued)
    assert queued.status == "cancelled"
    again = web.post(f"/ops/runs/{queued.id}/cancel")
    assert again.status_code == 409 and "has already ended" in again.text


def test_actions_need_the_csrf_token(db, login) -> None:  # type: ignore[no-untyped-def]
    run = make_run(db)
    resp = login("ops").post(f"/ops/runs/{run.id}/cancel", csrf=False)
    assert resp.status_code == 403
    db.refresh(run)
    assert not run.cancel_requested


def test_resume_a_failed_round_requeues_it(db, login, enqueued) -> None:  # type: ignore[no-untyped-def]
    run = make_run(db, status="failed", error="boom", error_stage="reward")
    run.stages[0].status, run.stages[1].status = "succeeded", "failed"
    db.flush()
    resp = login("ops").post(f"/ops/runs/{run.id}/resume", data={})
    assert resp.status_code == 303
    db.refresh(run)
    assert run.status == "queued" and run.error is None
    assert [s.status for s in run.stages] == ["succeeded", "pending", "pending", "pending"]
    assert enqueued == [("runs.run_round", (run.id,))]


def test_approve_deploys_the_rounds_policy_once(db, factory, login, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = policy(factory, tmp_path, "appr-base", is_deployed=True)
    run = make_run(db, status="awaiting_approval", parent_policy_id=base.id)
    new = policy(factory, tmp_path, "appr-new", parent_id=base.id, run_id=run.id)
    run.stages[2].output_version_id = new.id
    run.stages[3].metrics = {"rm_gain": 0.31, "kl": 4.2, "oracle_win_rate": 0.58}
    run.deploy_gate = {"auto_deploy": False, "min_rm_gain": 0.0, "max_kl": 50.0}
    db.flush()
    web = login("ops")
    page = web.get(f"/ops/runs/{run.id}").text
    assert 'id="approve-run"' in page and "data-confirm=" in page
    assert "Evaluation: the new policy against its parent" in page and "0.31" in page
    assert "Deploy gate held the round: automatic deployment is off." in page
    assert web.post(f"/ops/runs/{run.id}/approve").status_code == 303
    assert registry.deployed_policy(db).id == new.id  # type: ignore[union-attr]
    db.refresh(run)
    assert run.status == "succeeded"
    second = web.post(f"/ops/runs/{run.id}/approve")
    assert second.status_code == 409 and "not waiting for approval" in second.text


def test_deploy_then_rollback_through_the_versions_page(db, factory, login, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = policy(factory, tmp_path, "dep-a")
    b = policy(factory, tmp_path, "dep-b", parent_id=a.id)
    web = login("ops")
    assert web.post(f"/ops/versions/{a.id}/deploy").status_code == 303
    resp = web.post(f"/ops/versions/{b.id}/deploy")
    assert resp.status_code == 303 and resp.headers["location"] == "/ops/versions"
    assert registry.deployed_policy(db).id == b.id  # type: ignore[union-attr]

    twice = web.post(f"/ops/versions/{b.id}/deploy")
    assert twice.status_code == 409 and "dep-b is already deployed." in twice.text
    assert _count(db, Deployment) == 2

    page = web.get("/ops/versions").text
    assert f'id="deploy-{b.id}"' not in page and f'id="deploy-{a.id}"' in page
    assert 'data-confirm="Roll back from dep-b to dep-a?' in page and ">Roll back to dep-a</button>" in page

    assert web.post("/ops/rollback").status_code == 303
    assert registry.deployed_policy(db).id == a.id  # type: ignore[union-attr]
    history = web.get("/ops/versions").text
    assert "<td>rollback</td><td>dep-a</td><td>dep-b</td>" in history


def test_rollback_with_nothing_to_roll_back_is_a_clear_409(db, login) -> None:  # type: ignore[no-untyped-def]
    resp = login("ops").post("/ops/rollback")
    assert resp.status_code == 409 and "nothing to roll back" in resp.text


def test_reward_models_cannot_be_deployed(db, factory, login) -> None:  # type: ignore[no-untyped-def]
    rm = factory.model_version("reward")
    resp = login("ops").post(f"/ops/versions/{rm.id}/deploy")
    assert resp.status_code == 400 and "Only policy versions can be deployed." in resp.text


def _form(**over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "stages": ["sft", "reward", "ppo"],
        "splits": ["train", "valid"],
        "preset": "quick",
        "settings_sft": '{"epochs": 2}',
        "settings_reward": "{}",
        "settings_ppo": "{}",
        "min_rm_gain": "0.1",
        "max_kl": "25",
        "min_oracle_win_rate": "0.5",
        "max_over_refusal_rise": "0.1",
    }
    data.update(over)
    return data


def test_start_round_from_the_form_writes_the_export_and_redirects_to_its_page(
    db, factory, login, tmp_path: Path, enqueued
) -> None:  # type: ignore[no-untyped-def]
    base = policy(factory, tmp_path, "start-base", is_deployed=True)
    queue = factory.queue("demonstration")
    web = login("ops")
    resp = web.post(
        "/ops/rounds",
        data=_form(
            queue_ids=[str(queue.id)], since="2024-01-01", auto_deploy="on", parent_policy_id=str(base.id)
        ),
    )
    assert resp.status_code == 303, resp.text[:2000]
    run = db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert run is not None and resp.headers["location"] == f"/ops/runs/{run.id}"
    assert run.parent_policy_id == base.id and run.created_by_id == web.user.id
    assert [s.name for s in run.stages] == ["sft", "reward", "ppo", "evaluate"]
    assert run.config["sft"]["epochs"] == 2 and run.config["sft"]["lr"] == 3e-4
    assert run.deploy_gate["auto_deploy"] is True and run.deploy_gate["max_kl"] == 25.0
    assert run.deploy_gate["max_over_refusal_rise"] == 0.1
    batch = db.get(ExportBatch, run.export_batch_id)
    assert batch is not None and Path(batch.path, "manifest.json").is_file()
    assert batch.filters["queues"] == [queue.id] and batch.filters["splits"] == ["train", "valid"]
    assert batch.filters["since"] == "2024-01-01" and batch.created_by_id == web.user.id
    assert enqueued == [("runs.run_round", (run.id,))]
    page = web.get(resp.headers["location"]).text
    assert 'class="badge status-queued"' in page and 'hx-trigger="every 2s"' in page


def _rejected(db, web, data: dict[str, object], message: str) -> str:  # type: ignore[no-untyped-def]
    runs, batches = _count(db, TrainingRun), _count(db, ExportBatch)
    resp = web.post("/ops/rounds", data=data)
    assert resp.status_code == 422, resp.text[:500]
    assert message in resp.text, resp.text
    assert 'role="alert" id="round-error"' in resp.text
    assert (_count(db, TrainingRun), _count(db, ExportBatch)) == (runs, batches)
    return str(resp.text)


def test_non_contiguous_stages_are_rejected_and_the_input_kept(
    db, factory, login, tmp_path: Path, enqueued
) -> None:  # type: ignore[no-untyped-def]
    policy(factory, tmp_path, "val-base", is_deployed=True)
    web = login("ops")
    html = _rejected(
        db,
        web,
        _form(stages=["sft", "ppo"], since="2024-03-01", settings_sft='{"epochs": 7}'),
        "Stages must be a contiguous part of SFT -&gt; Reward model -&gt; PPO.",
    )
    assert 'value="2024-03-01"' in html and "{&#34;epochs&#34;: 7}" in html
    assert 'name="stages" value="sft" checked' in html and 'name="stages" value="reward" >' in html
    assert enqueued == []


def test_bad_settings_and_values_are_rejected_with_clear_messages(
    db, factory, login, tmp_path: Path, enqueued
) -> None:  # type: ignore[no-untyped-def]
    policy(factory, tmp_path, "val2-base", is_deployed=True)
    web = login("ops")
    _rejected(db, web, _form(settings_sft="{epochs: 2"), "SFT settings are not valid JSON")
    _rejected(db, web, _form(settings_ppo='{"kl_coeff": 0.1}'), "PPO settings: unknown key kl_coeff")
    _rejected(
        db,
        web,
        _form(settings_reward='{"epochs": "two"}'),
        "Reward model settings: epochs should look like 1",
    )
    _rejected(db, web, _form(settings_sft="[1, 2]"), "SFT settings must be a JSON object")
    _rejected(db, web, _form(stages=[]), "Choose at least one stage of SFT -&gt; Reward model -&gt; PPO.")
    _rejected(db, web, _form(splits=[]), "Choose at least one data split.")
    _rejected(
        db, web, _form(since="2024-02-01", until="2024-01-01"), "The end date is before the start date."
    )
    _rejected(db, web, _form(max_kl="lots"), "Deploy gate: maximum KL must be a number")
    _rejected(
        db, web, _form(max_over_refusal_rise="x"), "Deploy gate: maximum over-refusal rise must be a number"
    )
    _rejected(db, web, _form(queue_ids=["424242"]), "No queue with id 424242.")
    _rejected(db, web, _form(preset="huge"), "Preset must be one of quick, paper.")
    assert enqueued == []


def test_service_errors_come_back_on_the_form_and_store_nothing(db, login, enqueued) -> None:  # type: ignore[no-untyped-def]
    # No policy is deployed: start_round refuses after the form validated.
    _rejected(db, login("ops"), _form(), "Choose a parent policy: none is deployed yet.")
    assert enqueued == []


def test_a_settings_box_for_an_unchosen_stage_is_ignored(
    db, factory, login, tmp_path: Path, enqueued
) -> None:  # type: ignore[no-untyped-def]
    policy(factory, tmp_path, "ign-base", is_deployed=True)
    factory.model_version("reward", name="ign-rm")
    resp = login("ops").post("/ops/rounds", data=_form(stages=["ppo"], settings_sft="not json"))
    assert resp.status_code == 303
    run = db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert [s.name for s in run.stages] == ["ppo", "evaluate"]  # type: ignore[union-attr]


def test_a_failure_after_the_export_was_written_rolls_it_back(
    db, factory, login, tmp_path: Path, monkeypatch, enqueued
) -> None:  # type: ignore[no-untyped-def]
    from app.errors import AppError

    policy(factory, tmp_path, "half-base", is_deployed=True)

    def half_written(db_, filters, created_by=None):  # type: ignore[no-untyped-def]
        db_.add(ExportBatch(content_hash="1" * 64, path="/nonexistent/half", filters={}, counts={}))
        db_.flush()
        raise AppError("The chosen filters select no labels.")

    monkeypatch.setattr("app.exports.service.create_export_batch", half_written)
    _rejected(db, login("ops"), _form(), "The chosen filters select no labels.")
    assert enqueued == []
