"""A DPO round end to end: started from the ops console (PostgreSQL/Redis, a real worker) and from
`rlhf rounds start --method dpo` on the embedded default's file broker; deployed through the same
gate; its version's method and lineage on the versions page."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.db import session_scope
from app.policies import service as registry
from app.runs import pages as run_pages
from app.runs import service as rounds
from app.simulate import SimulatedSession
from tests.e2e.conftest import wait_for
from tests.e2e.test_loop import FAST_BEATS, _run, _setup
from tests.e2e.test_loop_data import seed_labels
from tests.factories import Factory
from tests.live import LiveServer, start_server

pytestmark = pytest.mark.slow

DPO_SETTINGS = {"epochs": 3, "batch_size": 4, "lr": 1e-3, "beta": 0.1, "warmup_steps": 0, "max_length": 64}


def _reward_model(base: Path, root: Path) -> Path:
    """A reward model trained on a simulated-world batch (as an earlier InstructGPT round leaves one)."""
    from training.config import RewardConfig, RuntimeConfig
    from training.data import write_batch
    from training.reward import run_reward
    from training.world import SimulatedLabeler, candidate_completions, make_prompts
    from training.world.simulate import ranking_records, split_by_user

    prompts = make_prompts(40, seed=5)
    rng = random.Random(5)
    comps = [candidate_completions(p, 4, rng) for p in prompts]
    batch = write_batch(
        root / "rm-batch",
        rankings=ranking_records(prompts, split_by_user(prompts, seed=5), comps, [SimulatedLabeler(2)]),
    )
    cfg = RewardConfig(
        batch_size=8, max_length=64, center_on_demonstrations=False, runtime=RuntimeConfig("cpu")
    )
    return run_reward(cfg, batch, base, root / "rm")


@pytest.fixture()
def redis_server(committed_db, redis_broker: str) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """A live server whose rounds go to the test's Redis broker (as in production)."""
    server = start_server(env={"REDIS_URL": redis_broker})
    try:
        yield server
    finally:
        server.stop()


def _finished(run_id: int, timeout: float) -> Any:
    """The run once it ended or waits at its gate; on a timeout, where it was and its log tail."""
    try:
        return wait_for(
            lambda: (r := _run(run_id)).status in (*rounds.TERMINAL, "awaiting_approval") and r,
            timeout,
            "the round",
        )
    except AssertionError as exc:
        r = _run(run_id)
        with session_scope() as db:
            tail = [line.line for line in run_pages.log_tail(db, run_id, n=10)]
        raise AssertionError(
            f"{exc}: {r.status} in {r.current_stage} at {r.progress:.0%}; log {tail}"
        ) from None


def test_dpo_round_from_the_console_deploys_through_the_gate(  # type: ignore[no-untyped-def]
    committed_db, micro_base, redis_server, spawn_worker, tmp_path: Path
) -> None:
    ids = _setup(committed_db, micro_base)
    with session_scope() as db:
        seed_labels(db, ids)
        rm = registry.register_version(
            db, name="e2e-rm", kind="reward", path=_reward_model(micro_base, tmp_path)
        )
        rm_id = rm.id
    spawn_worker("default,training", name="dpo", **FAST_BEATS)
    ops = SimulatedSession(redis_server.url, "e2e_ops", Factory.password)
    ops.sign_in()
    form: dict[str, Any] = {
        "method": "dpo",
        "stages": ["sft", "reward", "ppo", "dpo"],  # as the console ticks them; the method picks its own
        "splits": ["train", "valid", "test"],
        "preset": "quick",
        "settings_sft": '{"epochs": 2, "batch_size": 8, "lr": 0.001, "max_length": 64}',
        "settings_dpo": str(DPO_SETTINGS).replace("'", '"'),
        "auto_deploy": "on",
        "min_rm_gain": "-1000000",
        "max_kl": "1000000",
        "min_oracle_win_rate": "0",
        "csrf_token": ops.csrf,
    }
    resp = ops.http.post("/ops/rounds", data=form)
    assert resp.status_code == 303, resp.text[:2000]
    run_id = int(resp.headers["location"].rsplit("/", 1)[-1])
    run = wait_for(
        lambda: (r := _run(run_id)).status in (*rounds.TERMINAL, "awaiting_approval") and r,
        420,
        "the DPO round",
    )
    assert run.status == "succeeded", (run.error_stage, run.error)
    assert run.method == "dpo" and [s.name for s in run.stages] == ["sft", "dpo", "evaluate"]
    evaluation = run.stages[2].metrics
    assert "rm_gain" in evaluation and "new_rm_score" in evaluation  # the earlier round's RM scored it
    assert "oracle_win_rate" in evaluation and "kl" in evaluation
    with session_scope() as db:
        deployed = registry.deployed_policy(db)
        assert deployed is not None and deployed.name == f"policy-r{run_id}-dpo"
        sft = registry.get_version(db, deployed.parent_id)  # type: ignore[arg-type]
        assert sft.name == f"policy-r{run_id}-sft" and sft.parent_id == ids["base"]
        assert deployed.manifest["round"] == {"run": run_id, "method": "dpo", "stage": "dpo"}
        assert run.config["eval_reward_model_id"] == rm_id
        series = {(s.stage, s.name) for s in run_pages.metric_series(db, run_id)}
    assert {("dpo", "loss"), ("dpo", "reward_accuracy"), ("dpo", "chosen_logp")} <= series
    run_page = ops.http.get(f"/ops/runs/{run_id}").text
    assert "DPO reward accuracy" in run_page and '<dd id="run-method">DPO</dd>' in run_page
    assert evaluation["reward_model_id"] == rm_id  # recorded, and named on the run page
    assert f'from <a href="/ops/versions#v{rm_id}">e2e-rm</a>, registered before this round' in run_page
    versions = ops.http.get("/ops/versions").text
    row = versions[versions.index(f'id="v{deployed.id}"') :]
    row = row[: row.index("</tr>")]
    assert "deployed" in row and "method: <strong>DPO</strong>, stage DPO" in row
    assert f"lineage: e2e-base → policy-r{run_id}-sft → policy-r{run_id}-dpo" in row


@pytest.fixture()
def file_broker_worker() -> Iterator[subprocess.Popen[bytes]]:
    """A training worker on the embedded default's broker (files under DATA_DIR, no Redis)."""
    cmd = [sys.executable, "-m", "celery", "-A", "app.worker:celery_app", "worker", "-Q", "training",
           "-c", "1", "--loglevel", "WARNING", "-n", f"files-{os.getpid()}@%h", "--without-mingle",
           "--without-gossip"]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "REDIS_URL": "", **FAST_BEATS}, start_new_session=True)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_cli_starts_a_dpo_round_on_the_embedded_broker(  # type: ignore[no-untyped-def]
    committed_db, micro_base, file_broker_worker
) -> None:
    assert get_settings().redis_url in ("", None)  # the suite's settings: the file broker
    ids = _setup(committed_db, micro_base)
    with session_scope() as db:
        seed_labels(db, ids)
    result = CliRunner().invoke(cli, ["rounds", "start", "--method", "dpo", "--auto-deploy"])
    assert result.exit_code == 0, result.output
    assert "queued (dpo: sft -> dpo -> evaluate)" in result.output
    run_id = int(result.output.split()[1])
    run = _finished(run_id, 600)
    assert run.status in ("succeeded", "awaiting_approval"), (run.error_stage, run.error)
    assert run.method == "dpo" and [s.status for s in run.stages] == ["succeeded"] * 3
    with session_scope() as db:
        dpo = registry.get_version(db, run.stages[1].output_version_id)  # type: ignore[arg-type]
        assert dpo.name == f"policy-r{run_id}-dpo" and dpo.manifest["round"]["method"] == "dpo"
    listing = CliRunner().invoke(cli, ["rounds", "list"]).output
    assert f"{run_id}\t{run.status}\t100%\tdpo\tsft,dpo,evaluate" in listing
