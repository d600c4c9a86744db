"""A real Celery worker process round-trips a task through Redis and through the serverless transport."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.worker import celery_config, make_celery


def _start_worker(env: dict[str, str], queues: str = "default") -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app.worker:celery_app",
        "worker",
        "-Q",
        queues,
        "--pool",
        "solo",
        "--loglevel",
        "WARNING",
        "-n",
        f"test-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    return subprocess.Popen(cmd, env={**os.environ, **env})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(params=["redis", "filesystem"])
def worker_env(request, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """Settings and environment of a worker on each broker."""
    redis_url = "redis://127.0.0.1:6379/9" if request.param == "redis" else ""
    env = {"REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")}
    settings = Settings(redis_url=redis_url, data_dir=tmp_path / "data", rlhf_env="test")
    yield settings, env


def test_task_round_trip_through_a_real_worker(worker_env) -> None:  # type: ignore[no-untyped-def]
    settings, env = worker_env
    client = make_celery(settings)
    proc = _start_worker(env, queues="training")
    try:
        result = client.send_task("system.ping", args=["hello"], queue="training")
        reply = result.get(timeout=90)
    finally:
        _stop(proc)
    assert reply["payload"] == "hello"
    assert reply["pid"] == proc.pid  # it ran in the worker process, not here


def test_broker_choice_follows_settings(tmp_path: Path) -> None:
    with_redis = celery_config(Settings(redis_url="redis://127.0.0.1:6379/0", rlhf_env="test"))
    assert with_redis["broker_url"].startswith("redis://")
    serverless = celery_config(Settings(redis_url="", data_dir=tmp_path, rlhf_env="test"))
    assert serverless["broker_url"] == "filesystem://"
    assert Path(serverless["broker_transport_options"]["data_folder_in"]).is_dir()
    assert serverless["result_backend"].startswith("file://")
