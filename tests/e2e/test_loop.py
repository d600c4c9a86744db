"""The whole loop on real services: labels in, a round trained by a real worker, the new policy out.

import prompts -> demonstrations -> sampling -> rankings -> round (SFT, RM, PPO on a micro model)
-> evaluation -> deploy -> the next ranking tasks are sampled from the new version.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.enums import RunStatus, StageStatus, TaskKind
from app.labeling.models import Task
from app.policies import service as registry
from app.prompts.importer import Importer, RawRow
from app.rankings.models import Completion
from app.runs import pages as run_pages
from app.runs import service as rounds
from app.runs.models import TrainingRun
from app.runs.schemas import DeployGate, RoundRequest
from app.simulate import SimulatedSession, simulate
from tests.e2e.conftest import wait_for
from tests.e2e.test_loop_data import seed_labels
from tests.factories import Factory

pytestmark = pytest.mark.slow

TINY_SETTINGS: dict[str, dict[str, Any]] = {
    "sft": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "max_length": 64},
    "reward": {"epochs": 1, "batch_size": 8, "lr": 1e-4, "max_length": 64},
    "ppo": {
        "total_episodes": 32,
        "rollout_batch_size": 16,
        "minibatch_size": 8,
        "max_new_tokens": 12,
        "max_prompt_length": 48,
    },
}
FAST_BEATS = {"RUN_HEARTBEAT_S": "0.5", "RUN_STALE_AFTER_S": "4", "REAP_EVERY_S": "1", "RESTOCK_EVERY_S": "2"}


def _setup(db, base: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from training.world import make_prompts

    f = Factory(db)
    f.user("ops", username="e2e_ops")
    for name in ("e2e_alice", "e2e_bob"):
        f.user("labeler", username=name)
    demos = f.queue(TaskKind.demonstration, name="e2e demos", priority=1)
    ranks = f.queue(
        TaskKind.ranking,
        name="e2e ranks",
        k=4,
        overlap=1,
        priority=2,
        low_water=4,
        sampling={"mix": "deployed+parent", "max_new_tokens": 12},
    )
    prompts = make_prompts(40, seed=3)
    for queue, part in ((demos, prompts[0::2]), (ranks, prompts[1::2])):
        rows = (
            RawRow(i, data={"prompt": p.text, "user_id": f"cust-{i % 10}"}) for i, p in enumerate(part, 1)
        )
        Importer(db, get_settings(), queue, "valid_rows", source="world").run(rows)
    base_version = registry.register_version(db, name="e2e-base", kind="policy", path=base)
    registry.deploy(db, base_version.id)
    db.commit()
    return {"demos": demos.id, "ranks": ranks.id, "base": base_version.id}


def _open_ranking_tasks(queue_id: int, version_id: int) -> int:
    with session_scope() as db:
        return int(
            db.scalar(
                select(func.count(func.distinct(Task.id)))
                .join(Completion, Completion.task_id == Task.id)
                .where(
                    Task.queue_id == queue_id,
                    Task.status == "open",
                    Completion.policy_version_id == version_id,
                )
            )
            or 0
        )


def _run(run_id: int) -> TrainingRun:
    with session_scope() as db:
        run = rounds.get_run(db, run_id)
        _ = [s.status for s in run.stages]  # load while the session is open
        return run


def _start_round(ids: dict[str, Any], **settings: Any) -> int:
    req = RoundRequest(
        stages=["sft", "reward", "ppo"],
        settings={**TINY_SETTINGS, **settings},
        gate=DeployGate(auto_deploy=True, min_rm_gain=-1e9, max_kl=1e9, min_oracle_win_rate=0.0),
    )
    with session_scope() as db:
        return rounds.start_round(db, req, by=None).id


def test_full_loop_on_real_services(committed_db, micro_base, live_server, spawn_worker) -> None:  # type: ignore[no-untyped-def]
    ids = _setup(committed_db, micro_base)
    spawn_worker("default,sampling,training", beat=True, name="loop", **FAST_BEATS)
    logins = [("e2e_alice", Factory.password), ("e2e_bob", Factory.password)]

    # demonstrations through the web forms
    done = simulate(live_server.url, logins, tasks_each=5, queue_id=ids["demos"])
    assert sum(c["demonstration"] for c in done.values()) == 10
    # the ranking queue is empty: beat (or a labeler's request) makes the worker sample from the base
    wait_for(
        lambda: _open_ranking_tasks(ids["ranks"], ids["base"]) >= 4, 180, "ranking tasks sampled from base"
    )
    done = simulate(live_server.url, logins, tasks_each=3, queue_id=ids["ranks"])
    assert sum(c["ranking"] for c in done.values()) >= 4

    run_id = _start_round(ids)
    run = wait_for(
        lambda: (r := _run(run_id)).status in (*rounds.TERMINAL, "awaiting_approval") and r,
        420,
        "the round to finish",
    )
    assert run.status == RunStatus.succeeded.value, (run.error_stage, run.error)
    assert [s.status for s in run.stages] == ["succeeded"] * 4
    with session_scope() as db:
        deployed = registry.deployed_policy(db)
        assert deployed is not None and deployed.run_id == run_id and deployed.name.endswith("-ppo")
        series = {(s.stage, s.name) for s in run_pages.metric_series(db, run_id)}
        new_id = deployed.id
    assert any(stage == "sft" for stage, _ in series) and any(stage == "ppo" for stage, _ in series)

    # every step is visible on the console
    ops = SimulatedSession(live_server.url, "e2e_ops", Factory.password)
    ops.sign_in()
    run_page = ops.http.get(f"/ops/runs/{run_id}").text
    assert "status-succeeded" in run_page and "<svg" in run_page and "registered policy-r" in run_page
    versions_page = ops.http.get("/ops/versions").text
    assert f"policy-r{run_id}-ppo" in versions_page and "e2e-base" in versions_page
    assert "worker" in ops.http.get("/ops").text.lower()

    # the next ranking tasks come from the new version, mixed with its parent for comparisons
    wait_for(lambda: _open_ranking_tasks(ids["ranks"], new_id) >= 1, 180, "tasks sampled from the new policy")
    with session_scope() as db:
        versions = set(
            db.scalars(
                select(Completion.policy_version_id)
                .join(Task, Task.id == Completion.task_id)
                .where(Task.queue_id == ids["ranks"], Task.status == "open")
            )
        )
    assert new_id in versions


def test_sigkilled_worker_fails_the_round_and_resume_keeps_finished_stages(  # type: ignore[no-untyped-def]
    committed_db, micro_base, spawn_worker
) -> None:
    ids = _setup(committed_db, micro_base)
    with session_scope() as db:  # labels straight into the tables: this test is about the worker
        seed_labels(db, ids)
    spawn_worker("default", beat=True, name="sched", **FAST_BEATS)
    gpu = spawn_worker("training", name="gpu", **FAST_BEATS)
    # a long reward stage, so the kill lands inside it
    run_id = _start_round(ids, reward={**TINY_SETTINGS["reward"], "epochs": 400})
    wait_for(lambda: _run(run_id).current_stage == "reward", 240, "the reward stage to start")
    sft_version = _run(run_id).stages[0].output_version_id
    os.killpg(gpu.pid, signal.SIGKILL)

    run = wait_for(lambda: (r := _run(run_id)).status == "failed" and r, 30, "the reaper to fail the round")
    assert run.error_stage == "reward" and "stopped responding" in (run.error or "")
    assert [s.status for s in run.stages][:2] == [StageStatus.succeeded.value, StageStatus.failed.value]
    with session_scope() as db:
        assert registry.deployed_policy(db).id == ids["base"]  # the previous policy keeps serving

    with session_scope() as db:  # ops shorten the stage that was killed, then resume
        r = rounds.get_run(db, run_id)
        r.config = {**r.config, "reward": {**r.config["reward"], "epochs": 1}}
    with session_scope() as db:
        rounds.resume_run(db, run_id)
    spawn_worker("training", name="gpu2", **FAST_BEATS)
    run = wait_for(lambda: (r := _run(run_id)).status in rounds.TERMINAL and r, 420, "the resumed round")
    assert run.status == RunStatus.succeeded.value, (run.error_stage, run.error)
    assert run.stages[0].output_version_id == sft_version  # SFT was not run again


def test_cancel_stops_a_running_round(committed_db, micro_base, spawn_worker) -> None:  # type: ignore[no-untyped-def]
    ids = _setup(committed_db, micro_base)
    with session_scope() as db:
        seed_labels(db, ids)
    spawn_worker("default,training", name="cancel", **FAST_BEATS)
    run_id = _start_round(ids, reward={**TINY_SETTINGS["reward"], "epochs": 400})
    wait_for(lambda: _run(run_id).current_stage == "reward", 240, "the reward stage to start")
    with session_scope() as db:
        rounds.cancel_run(db, run_id)
    run = wait_for(
        lambda: (r := _run(run_id)).status == "cancelled" and r, 60, "the worker to stop the round"
    )
    assert [s.status for s in run.stages] == ["succeeded", "cancelled", "pending", "pending"]
    with session_scope() as db:
        assert registry.deployed_policy(db).id == ids["base"]
        assert any("cancelled by ops" in line.line for line in run_pages.log_tail(db, run_id))
