"""Sampling plans: which queues run low, which prompts, which versions share K; storing is safe."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.labeling.service import open_task_count
from app.policies import service as registry
from app.sampling import service


@dataclass
class FakeCompletion:
    text: str
    finished: bool = True
    params: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0})


def _policy(db, tmp_path: Path, name: str, parent_id: int | None = None):  # type: ignore[no-untyped-def]
    d = tmp_path / name
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"metrics": {}}))
    return registry.register_version(db, name=name, kind="policy", path=d, parent_id=parent_id)


def _fake_samples(job: service.StockJob) -> dict[int, list[list[FakeCompletion]]]:
    return {
        v.id: [[FakeCompletion(f"v{v.id} p{pid} #{j}") for j in range(v.share)] for pid in job.prompt_ids]
        for v in job.versions
    }


def test_no_plan_without_a_deployed_policy(db, factory) -> None:
    q = factory.queue("ranking", k=4, low_water=5)
    factory.prompt(q)
    assert service.plan_restock(db, q) is None


def test_plan_takes_the_shortfall_of_cleared_unsampled_prompts(db, factory, tmp_path: Path) -> None:
    base = _policy(db, tmp_path, "base")
    registry.deploy(db, base.id)
    q = factory.queue("ranking", k=4, low_water=3)
    cleared = [factory.prompt(q) for _ in range(5)]
    factory.prompt(q, pii_status="held")
    job = service.plan_restock(db, q)
    assert job is not None and job.prompt_ids == [p.id for p in cleared[:3]]
    assert [(v.id, v.share) for v in job.versions] == [(base.id, 4)]

    assert service.store_samples(db, job, _fake_samples(job)) == 3
    assert open_task_count(db, q.id) == 3
    assert service.plan_restock(db, q) is None  # stocked up to the low-water mark
    # the same job stored again (a concurrent restock) creates nothing twice
    assert service.store_samples(db, job, _fake_samples(job)) == 0


def test_mix_splits_k_between_deployed_and_parent(db, factory, tmp_path: Path) -> None:
    parent = _policy(db, tmp_path, "parent")
    child = _policy(db, tmp_path, "child", parent_id=parent.id)
    registry.deploy(db, child.id)
    q = factory.queue("ranking", k=5, low_water=2, sampling={"mix": "deployed+parent", "temperature": 0.7})
    factory.prompt(q)
    job = service.plan_restock(db, q)
    assert job is not None
    assert [(v.id, v.share) for v in job.versions] == [(child.id, 3), (parent.id, 2)]
    assert job.params["temperature"] == 0.7
    service.store_samples(db, job, _fake_samples(job))
    from sqlalchemy import select

    from app.rankings.models import Completion

    versions = sorted(
        db.scalars(select(Completion.policy_version_id).where(Completion.prompt_id == job.prompt_ids[0]))
    )
    assert versions == sorted([child.id] * 3 + [parent.id] * 2)


def test_store_skips_when_the_deployment_changed_meanwhile(db, factory, tmp_path: Path) -> None:
    a, b = _policy(db, tmp_path, "a"), _policy(db, tmp_path, "b")
    registry.deploy(db, a.id)
    q = factory.queue("ranking", k=4, low_water=2)
    factory.prompt(q)
    job = service.plan_restock(db, q)
    assert job is not None
    registry.deploy(db, b.id)
    assert service.store_samples(db, job, _fake_samples(job)) == 0


def test_restock_requests_are_throttled_per_queue(db, factory, tmp_path: Path, monkeypatch) -> None:
    sent: list[int] = []
    def fake_enqueue(db, name, qid, queue, on_sent):  # type: ignore[no-untyped-def]
        sent.append(qid)
        on_sent("task-id")  # the broker took it

    monkeypatch.setattr("app.queueing.enqueue_after_commit", fake_enqueue)
    monkeypatch.setattr(service, "_last_request", {})
    q = factory.queue("ranking", k=4, low_water=2)
    assert service.request_restock(db, q) is True
    assert service.request_restock(db, q) is False
    full = factory.queue("ranking", k=4, low_water=0)
    assert service.request_restock(db, full) is False
    demo = factory.queue("demonstration")
    assert service.request_restock(db, demo) is False
    assert sent == [q.id]


@pytest.mark.parametrize("mix", ["deployed", "deployed+parent"])
def test_without_parent_all_k_come_from_the_deployed_policy(db, factory, tmp_path: Path, mix: str) -> None:
    only = _policy(db, tmp_path, f"only-{mix}")
    registry.deploy(db, only.id)
    q = factory.queue("ranking", k=4, sampling={"mix": mix})
    assert [(v.id, v.share) for v in service.versions_for(db, q)] == [(only.id, 4)]


def test_a_new_deployment_is_sampled_although_old_tasks_are_open(db, factory, tmp_path: Path) -> None:
    old = _policy(db, tmp_path, "old")
    registry.deploy(db, old.id)
    q = factory.queue("ranking", k=4, low_water=2)
    for _ in range(2):
        factory.prompt(q)
    job = service.plan_restock(db, q)
    assert job is not None and service.store_samples(db, job, _fake_samples(job)) == 2
    assert service.plan_restock(db, q) is None
    new = _policy(db, tmp_path, "new", parent_id=old.id)
    registry.deploy(db, new.id)
    job = service.plan_restock(db, q)  # the old version's open tasks do not count
    assert job is not None and job.versions[0].id == new.id and len(job.prompt_ids) == 2


def _round_policies(db, tmp_path: Path, start):  # type: ignore[no-untyped-def]
    """An InstructGPT round started from `start`: SFT (parent start), then PPO (parent SFT)."""
    from app.runs.models import TrainingRun

    run = TrainingRun(status="succeeded", config={"stages": ["sft", "ppo"]}, parent_policy_id=start.id)
    db.add(run)
    db.flush()
    sft = _policy(db, tmp_path, f"sft-r{run.id}", parent_id=start.id)
    ppo = _policy(db, tmp_path, f"ppo-r{run.id}", parent_id=sft.id)
    sft.run_id = ppo.run_id = run.id
    db.flush()
    return sft, ppo


def test_the_mix_compares_a_rounds_policy_with_the_policy_the_round_started_from(
    db, factory, tmp_path: Path
) -> None:
    """The deploy gate compared PPO with the round's starting policy; the rankings must too (not with SFT)."""
    base = _policy(db, tmp_path, "start")
    registry.deploy(db, base.id)
    _, ppo = _round_policies(db, tmp_path, base)
    registry.deploy(db, ppo.id)
    q = factory.queue("ranking", k=4, sampling={"mix": "deployed+parent"})
    assert [(v.id, v.share) for v in service.versions_for(db, q)] == [(ppo.id, 2), (base.id, 2)]


def test_a_deployment_retires_untouched_tasks_without_its_completions(db, factory, tmp_path: Path) -> None:
    """Labelers are served the oldest task first: stale tasks from the old policy would hide the new one."""
    from sqlalchemy import select

    from app.db import utcnow
    from app.labeling.models import Assignment, Task
    from app.labeling.service import add_ranking_task
    from app.rankings.models import Completion

    old = _policy(db, tmp_path, "stale-old")
    registry.deploy(db, old.id)
    q = factory.queue("ranking", k=4, low_water=3, overlap=2, sampling={"mix": "deployed+parent"})
    seeded = add_ranking_task(db, q, factory.prompt(q), [Completion(text=f"seed {i}") for i in range(4)])
    for _ in range(3):
        factory.prompt(q)
    job = service.plan_restock(db, q)
    assert job is not None and service.store_samples(db, job, _fake_samples(job)) == 3
    sampled = sorted(db.scalars(select(Task.id).where(Task.id != seeded.id)))
    labeler = factory.user("labeler")
    db.add(Assignment(task_id=sampled[0], user_id=labeler.id, display_order=[], lease_expires_at=utcnow()))
    db.flush()

    _, ppo = _round_policies(db, tmp_path, old)
    registry.deploy(db, ppo.id)
    status = dict(db.execute(select(Task.id, Task.status)).tuples().all())
    assert status[seeded.id] == "open" and status[sampled[0]] == "open"  # world-written; started
    assert [status[i] for i in sampled[1:]] == ["retired", "retired"]
    job = service.plan_restock(db, q)  # restocks from the new policy and the one it replaced
    assert job is not None and [v.id for v in job.versions] == [ppo.id, old.id]


def test_a_deployment_asks_for_a_restock_at_once(db, factory, tmp_path: Path, monkeypatch) -> None:
    """Not at the next scheduled restock (a minute later): labelers would find no task from it meanwhile."""
    sent: list[int] = []
    monkeypatch.setattr(
        "app.queueing.enqueue_after_commit", lambda db, name, qid, queue, on_sent: sent.append(qid)
    )
    monkeypatch.setattr(service, "_last_request", {})
    old = _policy(db, tmp_path, "restock-old")
    q = factory.queue("ranking", k=4, low_water=2, sampling={"mix": "deployed+parent"})
    factory.queue("demonstration")
    registry.deploy(db, old.id)
    assert sent == [q.id]


def test_a_conversation_is_sampled_as_its_messages_and_nul_bytes_are_stored_safely(
    db, factory, tmp_path: Path
) -> None:
    from app.prompts import conversation
    from app.rankings.models import Completion

    registry.deploy(db, _policy(db, tmp_path, "base").id)
    q = factory.queue("ranking", k=4, low_water=2)
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Name a colour."}]
    conv = factory.prompt(q, conversation.transcript(msgs), messages=msgs)
    plain = factory.prompt(q, "Plain?")
    job = service.plan_restock(db, q)
    assert job is not None and job.prompt_texts == [msgs, "Plain?"]  # rendered by the chat template later
    samples = {v.id: [[FakeCompletion("bl\x00ue"), *(FakeCompletion("red") for _ in range(3))]] * 2
               for v in job.versions}
    assert service.store_samples(db, job, samples) == 2  # a byte-level model may sample NUL
    texts = {c.text for c in db.query(Completion).filter(Completion.prompt_id.in_([conv.id, plain.id]))}
    assert texts == {"bl\ufffdue", "red"}
