"""The demo as a new user runs it: seed, base policy, `rlhf simulate`, one quick round with
"deploy automatically" and the default gate, then the next simulated rankings prefer the new policy.

Real services: the web app, one Celery worker (sampling and training) with beat, Redis as broker
(TEST_REDIS_URL). The demo's own base model, the world's tiny one: the micro model cannot show a
gain (measured: SFT valid loss 5.05 -> 4.91 in 31 epochs, every answer made up for base and new alike,
oracle win-rate 0.43, RM gain interval [-0.034, +0.066] on 64 prompts). Its build takes minutes the
first time; TEST_MODEL_CACHE names a directory of built base models to reuse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.demo import seed_demo
from app.enums import RunStatus
from app.labeling.models import Task
from app.policies import service as registry
from app.prompts.models import PromptQueue
from app.rankings.models import Completion
from app.runs import service as rounds
from app.runs.schemas import DeployGate, RoundRequest
from app.simulate import simulate
from tests.e2e.conftest import wait_for
from tests.e2e.test_loop import _run

# A hang guard, not a speed goal: the module's fixture builds the tiny base (about 3 min on two quiet
# cores) inside the first test's time, and the round plus 400 decided comparisons take 5-7 min more;
# the suite's 600 s cut both short on a loaded machine (seen on 2026-12-07: 203 s + 397 s).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SIMULATE_TASKS = 100  # per labeler: what the README tells a new user to run (`rlhf simulate --tasks 100`)
# The new policy's preference is about 60 % (203 of 338 in three runs of this test: 49, 72, 59 % on
# about 110 each): its 95 % interval clears 50 % reliably only from about 400 decided comparisons.
DECIDED_COMPARISONS = 400
LABELERS = [("alice", "alice-demo-pass"), ("bob", "bob-demo-pass")]


@pytest.fixture(scope="module")
def tiny_base() -> Iterator[Path]:
    """The world's tiny base model (the demo's), built once or taken from TEST_MODEL_CACHE."""
    from training.world.base import ensure_base_model

    cache = Path(os.environ.get("TEST_MODEL_CACHE") or get_settings().data_dir / "cache")
    yield ensure_base_model(cache, size="tiny")


def _ranking_queue() -> int:
    with session_scope() as db:
        return int(db.scalar(select(PromptQueue.id).where(PromptQueue.name == "Demo: rank completions")))


def _open_tasks_from(queue_id: int, version_id: int) -> int:
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


def _win_rate(new_id: int, old_id: int) -> registry.WinRate:
    with session_scope() as db:
        return registry.win_rate(db, new_id, old_id)


def test_a_quick_demo_round_passes_the_default_gate_and_labelers_prefer_it(  # type: ignore[no-untyped-def]
    committed_db, tiny_base, live_server, spawn_worker
) -> None:
    from app.policies.models import ModelVersion

    seed_demo(committed_db)
    base = registry.register_version(committed_db, name="demo-base-tiny", kind="policy", path=tiny_base)
    registry.deploy(committed_db, base.id)
    base_id = base.id
    assert committed_db.scalar(select(func.count(ModelVersion.id))) == 1
    committed_db.commit()
    # The schedule of `make run` (restock every 60 s, deploys and leases ask at once), not test beats.
    spawn_worker("default,sampling,training", beat=True, name="demo")
    done = simulate(live_server.url, LABELERS, tasks_each=SIMULATE_TASKS)
    assert (
        sum(c["demonstration"] for c in done.values()) >= 64
        and sum(c["ranking"] for c in done.values()) >= 24
    )

    with session_scope() as db:  # what `rlhf rounds start --auto-deploy` does: the quick preset, default gate
        run_id = rounds.start_round(db, RoundRequest(gate=DeployGate(auto_deploy=True)), by=None).id
    run = wait_for(
        lambda: (r := _run(run_id)).status in (*rounds.TERMINAL, "awaiting_approval") and r, 900, "the round"
    )
    metrics: dict[str, Any] = next(s.metrics for s in run.stages if s.name == "evaluate") or {}
    print("simulated:", dict(done), "round:", run.status)  # shown with -s: the figures
    for stage in run.stages:
        print(stage.name, stage.status, stage.metrics)
    assert run.status == RunStatus.succeeded.value, (run.status, run.error, metrics)
    assert metrics["new_n"] >= 64 and metrics["rm_gain_lo"] > 0.0 and metrics["oracle_win_rate"] >= 0.5
    with session_scope() as db:
        deployed = registry.deployed_policy(db)
        assert deployed is not None and deployed.run_id == run_id
        new_id = deployed.id

    # The next rankings mix the new policy with the one it replaced; labelers prefer the new one.
    queue_id = _ranking_queue()
    for _ in range(60):
        wait_for(lambda: _open_tasks_from(queue_id, new_id) >= 1, 180, "tasks sampled from the new policy")
        simulate(live_server.url, LABELERS, tasks_each=8, queue_id=queue_id)
        win = _win_rate(new_id, base_id)
        if win.n >= DECIDED_COMPARISONS:
            break
    print("win-rate of the new policy over the one it replaced:", win, win.rate, win.interval)
    assert win.interval is not None and win.interval[0] > 0.5, (win, win.rate, win.interval)
