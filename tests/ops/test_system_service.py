"""Queue lengths on both brokers (a real Redis, the filesystem transport) and worker liveness."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.config import Settings
from app.db import utcnow
from app.system import service
from app.system.models import WorkerHeartbeat
from app.worker import make_celery

REDIS_TEST_URL = "redis://127.0.0.1:6379/9"


def _settings(tmp_path: Path, redis_url: str = "") -> Settings:
    return Settings(rlhf_env="test", data_dir=tmp_path / "data", redis_url=redis_url)


def _send(settings: Settings, queue: str, n: int = 1) -> None:
    """Send messages with the app's own Celery configuration, no worker running."""
    celery = make_celery(settings)
    try:
        for i in range(n):
            celery.send_task("system.ping", args=[f"hello {i}"], queue=queue)
    finally:
        celery.close()


def test_filesystem_broker_counts_messages_per_queue(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert service.queue_lengths(settings) == {"default": 0, "sampling": 0, "training": 0}
    _send(settings, "training", 2)
    _send(settings, "sampling", 1)
    assert service.queue_lengths(settings) == {"default": 0, "sampling": 1, "training": 2}
    names = list(Path(service.broker_folder(settings)).iterdir())
    assert len(names) == 3 and all(p.name.endswith(".msg") for p in names)


def test_filesystem_broker_without_a_folder_is_empty(tmp_path: Path) -> None:
    assert service.queue_lengths(_settings(tmp_path / "never")) == {
        "default": 0,
        "sampling": 0,
        "training": 0,
    }


@pytest.fixture()
def redis_db9() -> object:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (the test suite needs it)")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_redis_broker_counts_messages_per_queue(tmp_path: Path, redis_db9: object) -> None:
    settings = _settings(tmp_path, REDIS_TEST_URL)
    assert service.queue_lengths(settings) == {"default": 0, "sampling": 0, "training": 0}
    _send(settings, "training", 3)
    _send(settings, "default", 1)
    assert service.queue_lengths(settings) == {"default": 1, "sampling": 0, "training": 3}


def test_unreachable_redis_reads_as_unknown(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "redis://127.0.0.1:1/0")
    assert service.queue_lengths(settings) == {"default": None, "sampling": None, "training": None}


def test_workers_are_up_while_their_heartbeat_is_fresh(db) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    db.add_all(
        [
            WorkerHeartbeat(
                node="gpu@a",
                pid=11,
                queues=["training"],
                doing={"task": "runs.run_round", "args": [4]},
                last_seen=now - timedelta(seconds=20),
            ),
            WorkerHeartbeat(
                node="gpu@b", pid=12, queues=["sampling"], doing={}, last_seen=now - timedelta(seconds=90)
            ),
        ]
    )
    db.flush()
    found = {w.node: w for w in service.workers(db, now=now)}
    assert found["gpu@a"].up and found["gpu@a"].doing["args"] == [4] and found["gpu@a"].queues == ["training"]
    assert not found["gpu@b"].up
