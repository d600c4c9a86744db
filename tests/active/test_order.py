"""Ranking tasks leased in reward-model uncertainty order; scoring jobs; the queue page shows why."""

from __future__ import annotations

from app.active import service as active
from app.enums import TaskKind
from app.labeling import service as labeling
from app.policies.models import ModelVersion


def _reward_model(db, name: str = "rm-1") -> ModelVersion:
    rm = ModelVersion(name=name, kind="reward", path=f"/nowhere/{name}", manifest={}, metrics={})
    db.add(rm)
    db.flush()
    return rm


def test_uncertainty_queue_leases_most_uncertain_first_unscored_last(db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4, task_order="uncertainty")
    rm = _reward_model(db)
    unscored = factory.task(q)
    low = factory.task(q, uncertainty=0.1, scored_by_id=rm.id)
    high = factory.task(q, uncertainty=0.9, scored_by_id=rm.id)
    mid = factory.task(q, uncertainty=0.5, scored_by_id=rm.id)
    got = [labeling.next_task(db, factory.user(), q.id).task_id for _ in range(4)]  # type: ignore[union-attr]
    assert got == [high.id, mid.id, low.id, unscored.id]


def test_oldest_queue_ignores_scores(db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4)
    first = factory.task(q, uncertainty=0.1)
    factory.task(q, uncertainty=0.9)
    assert labeling.next_task(db, factory.user(), q.id).task_id == first.id  # type: ignore[union-attr]


def test_any_queue_lease_respects_the_order_within_a_priority(db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4, task_order="uncertainty")
    factory.task(q, uncertainty=0.2)
    top = factory.task(q, uncertainty=0.8)
    assert labeling.next_task(db, factory.user()).task_id == top.id  # type: ignore[union-attr]


def test_plan_and_store_scores_with_the_latest_reward_model(db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4, task_order="uncertainty")
    tasks = [factory.task(q) for _ in range(3)]
    assert active.plan_scoring(db, q.id) is None  # no reward model yet
    old = _reward_model(db, "rm-old")
    job = active.plan_scoring(db, q.id)
    assert job is not None and job.reward_model_id == old.id and job.task_ids == [t.id for t in tasks]
    assert all(len(c) == 4 for c in job.completions) and len(job.prompts) == 3
    assert active.store_scores(db, job, [0.3, 0.7, 0.5]) == 3
    assert active.plan_scoring(db, q.id) is None  # all scored by the latest
    new = _reward_model(db, "rm-new")
    again = active.plan_scoring(db, q.id)
    assert again is not None and again.reward_model_id == new.id and len(again.task_ids) == 3
    oldest_first = factory.queue(TaskKind.ranking, k=4)
    factory.task(oldest_first)
    assert active.plan_scoring(db, oldest_first.id) is None  # only queues in uncertainty order


def test_registering_a_reward_model_asks_for_a_rescore(db, factory, monkeypatch, tmp_path) -> None:
    from app.policies import service as registry

    asked: list[str] = []
    monkeypatch.setattr(
        "app.queueing.enqueue_after_commit", lambda _db, name, *a, **k: asked.append(name)
    )
    monkeypatch.setattr(registry, "read_manifest", lambda _p: {"metrics": {}})
    registry.register_version(db, name="p1", kind="policy", path=tmp_path)
    assert asked == []
    registry.register_version(db, name="r1", kind="reward", path=tmp_path)
    assert asked == ["active.rescore_all"]


def test_queue_page_shows_the_order_and_scores(login, db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4, task_order="uncertainty", name="al queue")
    rm = _reward_model(db, "rm-shown")
    low = factory.task(q, uncertainty=0.125, scored_by_id=rm.id)
    high = factory.task(q, uncertainty=0.875, scored_by_id=rm.id)
    factory.task(q)
    page = login("admin").get(f"/admin/queues/{q.id}").text
    assert "Most uncertain for the reward model first" in page
    assert page.index(f'data-task="{high.id}"') < page.index(f'data-task="{low.id}"')
    assert "0.875" in page and "0.125" in page and "rm-shown" in page and "not scored" in page


def test_queue_form_sets_edits_and_order(login, db, factory) -> None:
    from app.prompts.models import PromptQueue

    web = login("admin")
    resp = web.post("/admin/queues", data={
        "name": "new al", "kind": "ranking", "k": "4", "allow_edits": "1", "task_order": "uncertainty",
    })
    assert resp.status_code == 303
    q = db.query(PromptQueue).filter_by(name="new al").one()
    assert q.allow_edits is True and q.task_order == "uncertainty"
    bad = web.post(f"/admin/queues/{q.id}", data={"name": "new al", "kind": "ranking",
                                                   "task_order": "random"})
    assert bad.status_code == 400 and "task_order" in bad.text and "Nothing was saved" in bad.text
    web.post(f"/admin/queues/{q.id}", data={"name": "new al", "kind": "ranking", "k": "4"})
    db.refresh(q)
    assert q.allow_edits is False and q.task_order == "oldest"
