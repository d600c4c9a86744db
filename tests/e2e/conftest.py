"""Real services for end-to-end tests: Redis as broker, Celery worker processes, a live server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.config import Settings, get_settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/10")


@pytest.fixture()
def redis_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty Redis database as broker, and this process's enqueueing pointed at it."""
    import app.worker
    from app.worker import make_celery

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    base = get_settings()
    monkeypatch.setattr(
        app.worker,
        "celery_app",
        make_celery(
            Settings(
                redis_url=REDIS_URL, data_dir=base.data_dir, database_url=base.database_url, rlhf_env="test"
            )
        ),
    )
    yield REDIS_URL
    client.flushdb()


@pytest.fixture()
def spawn_worker(redis_broker: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """start(queues, beat=False, **env) -> a Celery worker process in its own process group."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(queues: str, *, beat: bool = False, name: str = "w", **env: str) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.worker:celery_app",
            "worker",
            "-Q",
            queues,
            "-c",
            "1",
            "--loglevel",
            "WARNING",
            "-n",
            f"{name}-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ]
        if beat:
            schedule = Path(get_settings().data_dir) / f"beat-{name}-{time.time_ns()}"
            cmd += ["--beat", "--schedule", str(schedule)]
        full_env = {**os.environ, "REDIS_URL": redis_broker, **env}
        proc = subprocess.Popen(cmd, env=full_env, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def micro_base() -> Path:
    """The world's micro base model (built once per test session, cached under DATA_DIR)."""
    from training.world.base import ensure_base_model

    return ensure_base_model(get_settings().data_dir / "cache", size="micro")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.5) -> object:
    """Poll until predicate() is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
