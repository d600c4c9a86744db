"""`rlhf dev` (what `make run` starts) stops as a whole on SIGTERM to its process group within
10 s, and a round that was training is marked failed in its stage, ready for Resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from app.db import session_scope
from app.enums import RunStatus
from app.runs import service as rounds
from tests.e2e.conftest import wait_for
from tests.e2e.test_loop import FAST_BEATS, TINY_SETTINGS, _run, _setup, _start_round
from tests.e2e.test_loop_data import seed_labels
from tests.live import free_port

pytestmark = pytest.mark.slow


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


def test_sigterm_to_the_process_group_stops_web_and_worker_and_the_round_can_resume(  # type: ignore[no-untyped-def]
    committed_db, micro_base, redis_broker
) -> None:
    ids = _setup(committed_db, micro_base)
    with session_scope() as db:
        seed_labels(db, ids)
    port = free_port()
    rlhf = str(Path(sys.executable).parent / "rlhf")
    env = {**os.environ, "REDIS_URL": redis_broker, **FAST_BEATS}
    dev = subprocess.Popen([rlhf, "dev", "--port", str(port)], env=env, start_new_session=True)
    try:
        wait_for(lambda: _healthy(port), 60, "the web app")
        run_id = _start_round(ids, reward={**TINY_SETTINGS["reward"], "epochs": 400})  # a long stage
        wait_for(lambda: _run(run_id).current_stage == "reward", 300, "the reward stage to start")
        family = [dev.pid] + [c.pid for c in psutil.Process(dev.pid).children(recursive=True)]
        assert len(family) >= 4  # rlhf dev, the worker, its pool processes and beat
        t0 = time.monotonic()
        os.killpg(dev.pid, signal.SIGTERM)  # what a terminal or a process manager does to `make run`
        while _alive(family) and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        stopped_after = time.monotonic() - t0
        assert not _alive(family), f"still running after {stopped_after:.1f} s: {_alive(family)}"
        assert stopped_after <= 10, stopped_after
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
    run = _run(run_id)
    assert run.status == RunStatus.failed.value and run.error_stage == "reward", (run.status, run.error)
    assert "worker was stopped" in (run.error or "")
    assert [s.status for s in run.stages][:2] == ["succeeded", "failed"]
    with session_scope() as db:
        assert rounds.resume_run(db, run_id).status == RunStatus.queued.value  # Resume picks it up


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
