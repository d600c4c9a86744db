"""Rounds choose their method on the console: the DPO preset, the reward model its evaluation
uses, and the method and lineage of each version on the versions page."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.runs.models import TrainingRun
from tests.ops.conftest import make_run, policy


def _form(**over: object) -> dict[str, object]:
    data: dict[str, object] = {
        "method": "dpo",
        "stages": ["sft", "reward", "ppo", "dpo"],  # the console's default: every stage ticked
        "splits": ["train", "valid"],
        "preset": "quick",
        "settings_sft": "{}",
        "settings_reward": "not looked at",
        "settings_ppo": "{}",
        "settings_dpo": '{"beta": 0.25}',
        "max_kl": "25",
    }
    data.update(over)
    return data


def test_a_dpo_round_from_the_form_runs_sft_then_dpo(db, factory, login, tmp_path: Path, enqueued) -> None:  # type: ignore[no-untyped-def]
    policy(factory, tmp_path, "m-base", is_deployed=True)
    rm = factory.model_version("reward", name="m-rm")
    web = login("ops")
    page = web.get("/ops").text
    assert '<option value="dpo" >DPO (SFT → DPO)</option>' in page
    assert '<option value="instructgpt" selected>InstructGPT (SFT → Reward model → PPO)</option>' in page
    resp = web.post("/ops/rounds", data=_form())
    assert resp.status_code == 303, resp.text[:2000]
    run = db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert run is not None and run.method == "dpo"
    assert [s.name for s in run.stages] == ["sft", "dpo", "evaluate"]
    assert run.config["dpo"]["beta"] == 0.25 and run.config["dpo"]["epochs"] == 2  # over the quick preset
    # no stage needs a reward model; the evaluation scores with the latest registered one
    assert run.config["reward_model_id"] is None and run.config["eval_reward_model_id"] == rm.id
    assert enqueued == [("runs.run_round", (run.id,))]
    assert '<dd id="run-method">DPO</dd>' in web.get(f"/ops/runs/{run.id}").text


def test_dpo_settings_are_checked_against_the_dpo_config(
    db, factory, login, tmp_path: Path, enqueued
) -> None:  # type: ignore[no-untyped-def]
    policy(factory, tmp_path, "m2-base", is_deployed=True)
    web = login("ops")
    resp = web.post("/ops/rounds", data=_form(settings_dpo='{"kl_coef": 0.1}'))
    assert resp.status_code == 422 and "DPO settings: unknown key kl_coef" in resp.text
    resp = web.post("/ops/rounds", data=_form(method="sft-only"))
    assert resp.status_code == 422
    assert "Method must be one of InstructGPT, DPO, DPO reward + PPO." in resp.text
    assert enqueued == []


def test_versions_page_shows_method_and_lineage(db, factory, login, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = policy(factory, tmp_path, "lin-base")
    run = make_run(db, status="succeeded", stages=("sft", "dpo", "evaluate"), method="dpo")
    sft = policy(factory, tmp_path, "lin-sft", parent_id=base.id, run_id=run.id)
    sft.manifest = {"round": {"run": run.id, "method": "dpo", "stage": "sft"}}
    dpo = policy(factory, tmp_path, "lin-dpo", parent_id=sft.id, run_id=run.id)
    dpo.manifest = {"round": {"run": run.id, "method": "dpo", "stage": "dpo"}}
    db.flush()
    page = login("admin").get("/ops/versions").text
    row = page[page.index(f'id="v{dpo.id}"') :]
    row = row[: row.index("</tr>")]
    assert "method: <strong>DPO</strong>, stage DPO" in row
    assert "lineage: lin-base → lin-sft → lin-dpo" in row
    base_row = page[page.index(f'id="v{base.id}"') :]
    assert "method:" not in base_row[: base_row.index("</tr>")]  # registered outside a round
