"""No enqueue is lost: a task is written to the outbox in the transaction of its row and relayed
until the broker takes it. Redis is stopped between the commit and the send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app import queueing
from app.config import Settings
from app.db import session_scope
from app.exports import jobs
from app.exports.models import ExportJob
from app.exports.schemas import parse_filters
from app.system.models import OutboxMessage
from tests.hardening.services import OwnRedis


@pytest.fixture()
def own_broker(monkeypatch) -> Iterator[OwnRedis]:  # type: ignore[no-untyped-def]
    """A redis-server of our own as the Celery broker of this process."""
    import app.worker

    own = OwnRedis()
    own.start()
    broker = app.worker.make_celery(Settings(redis_url=own.url, rlhf_env="test"))
    monkeypatch.setattr(app.worker, "celery_app", broker)
    try:
        yield own
    finally:
        own.stop()


def _queued(own: OwnRedis, queue: str) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(own.url)
    return [json.loads(raw)["headers"] for raw in client.lrange(queue, 0, -1)]


def test_a_job_committed_while_redis_is_down_is_sent_once_it_is_back(committed_db, own_broker) -> None:
    def stop_broker(_session: Session) -> None:
        own_broker.stop()

    with session_scope() as db:
        job = jobs.start_export(db, parse_filters({}), None)
        event.listen(db, "after_commit", stop_broker, once=True)  # between the commit and the send
    job_id = job.id
    committed_db.expire_all()
    message = committed_db.scalar(select(OutboxMessage))
    assert message is not None and message.args == [job_id]
    assert message.sent_at is None and message.attempts == 1
    message_id = message.id
    assert committed_db.get(ExportJob, job_id).status == "queued"  # type: ignore[union-attr]
    assert queueing.pending(committed_db) == 1
    committed_db.rollback()

    from app.system.tasks import relay_outbox

    assert relay_outbox() == 0  # the scheduled relay while Redis is still down: kept for later
    own_broker.start()  # same port, empty
    assert relay_outbox() == 1  # beat's next tick
    sent = _queued(own_broker, "default")
    assert [(h["task"], h["id"]) for h in sent] == [(jobs.EXPORT_TASK, f"outbox-{message_id}")]
    assert str(job_id) in sent[0]["argsrepr"]
    assert relay_outbox() == 0 and queueing.pending(committed_db) == 0  # sent once
    assert len(_queued(own_broker, "default")) == 1


def test_a_rolled_back_transaction_sends_nothing(committed_db, own_broker) -> None:
    with pytest.raises(RuntimeError), session_scope() as db:
        jobs.start_export(db, parse_filters({}), None)
        raise RuntimeError("the request failed after recording the job")
    assert committed_db.scalar(select(OutboxMessage)) is None
    committed_db.rollback()
    assert queueing.relay() == 0 and _queued(own_broker, "default") == []


def test_beat_relays_the_outbox_and_workers_relay_it_at_start(monkeypatch) -> None:
    from app import worker
    from app.system import tasks

    schedule = worker.celery_config(Settings(rlhf_env="test"))["beat_schedule"]
    assert schedule["relay-outbox"]["task"] == "system.relay_outbox"
    calls: list[str] = []

    def relay() -> int:
        calls.append("relay")
        return 0

    class NoThread:
        def __init__(self, **_: Any) -> None:
            pass

        def start(self) -> None:
            pass

    monkeypatch.setattr(tasks, "relay", relay)
    monkeypatch.setattr(tasks, "_beat", lambda *a, **k: None)
    monkeypatch.setattr(tasks.threading, "Thread", NoThread)
    tasks._on_ready(sender=None)
    assert calls == ["relay"]
