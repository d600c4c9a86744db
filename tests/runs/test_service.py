"""Rounds: stage bookkeeping, cancellation, resume, approval, dead workers, the deploy gate."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from app.db import utcnow
from app.enums import RunStatus, StageStatus
from app.errors import Conflict
from app.policies import service as registry
from app.runs import pages, service
from app.runs.gate import gate_decision
from app.runs.models import RunStage, TrainingRun
from app.runs.schemas import RoundRequest


def _run(db, status: str = "running", stages=("sft", "reward", "ppo", "evaluate"), **kw) -> TrainingRun:  # type: ignore[no-untyped-def]
    run = TrainingRun(status=status, config={"stages": list(stages)}, **kw)
    run.stages = [RunStage(name=n, ordinal=i) for i, n in enumerate(stages)]
    db.add(run)
    db.flush()
    return run


def test_round_request_requires_contiguous_stages() -> None:
    assert RoundRequest(stages=["reward", "ppo"]).stages == ["reward", "ppo"]
    with pytest.raises(ValueError, match="contiguous"):
        RoundRequest(stages=["sft", "ppo"])
    with pytest.raises(ValueError, match="at least one"):
        RoundRequest(stages=["evaluate"])


def test_round_request_takes_the_methods_stages() -> None:
    assert RoundRequest().stages == ["sft", "reward", "ppo"]
    assert RoundRequest(method="dpo").stages == ["sft", "dpo"]
    assert RoundRequest(method="dpo", stages=["dpo"]).stages == ["dpo"]
    with pytest.raises(ValueError, match="reward is not a stage of DPO"):
        RoundRequest(method="dpo", stages=["sft", "reward"])
    with pytest.raises(ValueError, match="method must be one of instructgpt, dpo"):
        RoundRequest(method="rlaif")
    settings = RoundRequest(method="dpo", settings={"dpo": {"beta": 0.5}}).stage_settings()
    assert set(settings) == {"sft", "dpo"} and settings["dpo"]["beta"] == 0.5


def test_stage_settings_overlay_preset() -> None:
    req = RoundRequest(preset="quick", settings={"sft": {"epochs": 9}})
    s = req.stage_settings()
    assert s["sft"]["epochs"] == 9 and s["sft"]["lr"] == 3e-4 and "total_episodes" in s["ppo"]
    assert RoundRequest(preset="paper").stage_settings()["sft"] == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sft": {"epoch": 9}}, "SFT settings: unknown key epoch"),
        ({"sft": {"epochs": "9"}}, "SFT settings: epochs should look like"),
        ({"ppo": {"kl_coef": -1}}, "kl_coef must be"),
        ({"kto": {}}, "no stage is named 'kto'"),
    ],
)
def test_round_request_checks_settings_whoever_builds_it(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoundRequest(settings=settings)


def test_round_settings_are_checked_with_the_presets_before_the_round_runs() -> None:
    # 66 is a rollout alone, but not a multiple of the quick preset's 4 answers per prompt
    with pytest.raises(ValueError, match="PPO settings with the quick preset: rollout_batch_size 66"):
        RoundRequest(preset="quick", settings={"ppo": {"rollout_batch_size": 66}})
    assert RoundRequest(preset="paper", settings={"ppo": {"rollout_batch_size": 66}})  # GAE: any size
    assert RoundRequest(preset="quick", settings={"ppo": {"rollout_batch_size": 60}})


def test_stale_running_round_is_failed_with_its_stage(db) -> None:
    fresh = _run(db, heartbeat_at=utcnow(), current_stage="sft")
    dead = _run(db, heartbeat_at=utcnow() - timedelta(seconds=300), current_stage="reward")
    dead.stages[1].status = StageStatus.running.value
    db.flush()
    assert service.reap_stale_runs(db) == [dead.id]
    assert dead.status == RunStatus.failed.value and dead.error_stage == "reward"
    assert "stopped responding" in (dead.error or "")
    assert dead.stages[1].status == StageStatus.failed.value
    assert fresh.status == RunStatus.running.value


def test_cancel_queued_is_immediate_running_is_requested(db) -> None:
    queued = _run(db, status="queued")
    service.cancel_run(db, queued.id)
    assert queued.status == RunStatus.cancelled.value
    running = _run(db)
    service.cancel_run(db, running.id)
    assert running.status == RunStatus.running.value and running.cancel_requested
    with pytest.raises(Conflict):
        service.cancel_run(db, queued.id)


def test_resume_keeps_succeeded_stages(db, monkeypatch) -> None:
    sent = []
    monkeypatch.setattr(
        "app.runs.service.enqueue", lambda db, name, *a, queue: sent.append((name, a))
    )
    run = _run(db, status="failed", error="boom", error_stage="reward")
    run.stages[0].status = StageStatus.succeeded.value
    run.stages[1].status = StageStatus.failed.value
    db.flush()
    service.resume_run(db, run.id)
    assert run.status == RunStatus.queued.value and run.error is None
    assert [s.status for s in run.stages] == ["succeeded", "pending", "pending", "pending"]
    assert sent == [("runs.run_round", (run.id,))]
    with pytest.raises(Conflict):
        service.resume_run(db, _run(db, status="succeeded").id)


def test_approve_deploys_the_rounds_policy(db, factory, tmp_path: Path) -> None:
    d = tmp_path / "pol"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"metrics": {}}))
    policy = registry.register_version(db, name="p-approve", kind="policy", path=d)
    run = _run(db, status="awaiting_approval")
    run.stages[2].output_version_id = policy.id
    db.flush()
    ops = factory.user("ops")
    service.approve_run(db, run.id, ops)
    assert run.status == RunStatus.succeeded.value
    assert registry.deployed_policy(db).id == policy.id
    with pytest.raises(Conflict):
        service.approve_run(db, run.id, ops)


def test_metric_series_and_eta(db) -> None:
    run = _run(db, started_at=utcnow() - timedelta(seconds=100))
    run.progress = 0.25
    for step, loss in [(1, 2.0), (2, 1.5), (3, 1.2)]:
        service.add_metrics(db, run.id, "sft", step, {"loss": loss, "note": "x", "nan": float("nan")})
    db.flush()
    series = pages.metric_series(db, run.id)
    assert [(s.stage, s.name, s.points) for s in series] == [("sft", "loss", [(1, 2.0), (2, 1.5), (3, 1.2)])]
    eta = pages.eta_seconds(run)
    assert eta is not None and 290 < eta < 310


def test_gate_decision() -> None:
    gate = {"auto_deploy": True, "min_rm_gain": 0.0, "max_kl": 10.0, "min_oracle_win_rate": 0.5}
    assert gate_decision(gate, {"rm_gain": 0.3, "kl": 2.0, "oracle_win_rate": 0.7}) == (True, [])
    ok, reasons = gate_decision(gate, {"rm_gain": -0.1, "kl": 12.0, "oracle_win_rate": 0.4})
    assert not ok and len(reasons) == 3
    ok, reasons = gate_decision({**gate, "auto_deploy": False}, {"rm_gain": 1.0})
    assert not ok and reasons == ["automatic deployment is off"]
    # With the paired interval measured, the gain must be shown, not merely not negative: a tie (the
    # measured demo round: identical answers, gain 0.0 with interval [0, 0]) is held.
    tie = {"rm_gain": 0.0, "rm_gain_lo": 0.0, "rm_gain_hi": 0.0, "kl": 0.0, "oracle_win_rate": 0.5}
    ok, reasons = gate_decision(gate, tie)
    assert not ok and reasons == ["RM gain +0.000: its 95 % interval starts at +0.000, not above 0.0"]
    shown = {"rm_gain": 0.2, "rm_gain_lo": 0.05, "rm_gain_hi": 0.35, "kl": 1.0, "oracle_win_rate": 0.6}
    assert gate_decision(gate, shown) == (True, [])
    assert not gate_decision(gate, {**shown, "rm_gain_lo": -0.01})[0]


def test_gate_holds_a_policy_shown_to_refuse_more() -> None:
    gate = {"auto_deploy": True, "max_over_refusal_rise": 0.05}
    # a rise whose interval reaches below the allowance is not evidence: it passes
    assert gate_decision(gate, {"over_refusal_rise": 0.09, "over_refusal_rise_lo": 0.01}) == (True, [])
    ok, reasons = gate_decision(gate, {"over_refusal_rise": 0.375, "over_refusal_rise_lo": 0.2})
    assert not ok
    assert reasons == ["over-refusal up +0.375: its 95 % interval starts at +0.200, above the 0.05 allowed"]
    # a gate saved before the check existed (no key), or an evaluation without world prompts: no check
    assert gate_decision({"auto_deploy": True}, {"over_refusal_rise": 0.375, "over_refusal_rise_lo": 0.2})[0]
    assert gate_decision(gate, {"rm_gain": 0.1})[0]
