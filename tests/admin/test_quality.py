"""Quality numbers read from the label tables: agreement per labeler and queue, gold, pausing, throughput."""

from __future__ import annotations

import random

import pytest

from app.config import get_settings
from app.enums import TaskKind
from app.quality import review, service
from tests.admin.builders import demonstration, ranking


@pytest.fixture()
def overlapped(db, factory):  # type: ignore[no-untyped-def]
    """Three labelers rank one K=4 item; two rank a second one; one item has a single ranking."""
    a, b, c = (factory.user("labeler", username=n) for n in ("qa_ann", "qa_ben", "qa_cat"))
    queue = factory.queue(TaskKind.ranking, k=4, overlap=3)
    t1, t2, t3 = factory.task(queue), factory.task(queue), factory.task(queue)
    ranking(db, t1, a, [1, 2, 3, 4], time_spent_ms=20_000)
    ranking(db, t1, b, [1, 2, 4, 3], time_spent_ms=40_000)
    ranking(db, t1, c, [2, 2, 1, 3], time_spent_ms=60_000)
    ranking(db, t2, a, [1, 2, 3, 4])
    ranking(db, t2, b, [4, 3, 2, 1])
    ranking(db, t3, c, [1, 2, 3, 4])
    return {"a": a, "b": b, "c": c, "queue": queue, "t1": t1, "t2": t2}


def test_agreement_per_queue_and_per_labeler_matches_hand_counts(db, overlapped) -> None:
    total, per_user = service.agreement(db, overlapped["queue"].id)
    a, b, c = (overlapped[k].id for k in "abc")
    # t1: a-b 5/6; a-c: c ties (0,1) -> 5 comparisons, agree on (0,3)(1,3)(2,3) = 3/5;
    #     b-c: agree on (0,3)(1,3) = 2/5
    # t2: a-b fully reversed: 0/6.  Totals: 10 agreeing of 22.
    assert (total.agree, total.compared, total.items) == (10, 22, 2)
    assert (per_user[a].agree, per_user[a].compared) == (5 + 3 + 0, 6 + 5 + 6)
    assert (per_user[b].agree, per_user[b].compared) == (5 + 2 + 0, 6 + 5 + 6)
    assert (per_user[c].agree, per_user[c].compared) == (3 + 2, 5 + 5)
    assert per_user[a].items == 2 and per_user[c].items == 1
    # Tau on t2 for a against b alone is -1; a's mean tau mixes t1 and t2.
    assert min(per_user[a].taus) == pytest.approx(-1.0) and len(per_user[a].taus) == 2
    assert service.queue_agreements(db)[overlapped["queue"].id].agree == 10


def test_gold_accuracy_threshold_and_pausing(db, factory, overlapped) -> None:
    settings = get_settings().model_copy(update={"gold_min_items": 1, "gold_min_accuracy": 0.5})
    service.mark_gold_from_ranking(db, _ranking_of(db, overlapped["t2"], overlapped["a"]))
    gold = service.gold_accuracy(db)
    assert gold[overlapped["a"].id] == (1, 1.0) and gold[overlapped["b"].id] == (1, 0.0)
    rows = {r.user.username: r for r in service.labeler_stats(db, settings)}
    assert rows["qa_ben"].below_gold and not rows["qa_ann"].below_gold
    paused = service.pause_below_gold(db, settings)
    assert [u.username for u in paused] == ["qa_ben"] and overlapped["b"].is_paused
    assert not overlapped["a"].is_paused
    service.set_paused(db, overlapped["b"].id, False)
    assert not overlapped["b"].is_paused


def test_gold_injection_follows_the_rate(db, factory, overlapped) -> None:
    queue = overlapped["queue"]
    newcomer = factory.user("labeler")
    service.mark_gold_from_ranking(db, _ranking_of(db, overlapped["t1"], overlapped["a"]))
    queue.gold_rate = 0.0
    assert service.pick_gold_task(db, queue, newcomer, random.Random(1)) is None
    queue.gold_rate = 1.0
    assert service.pick_gold_task(db, queue, newcomer, random.Random(1)).id == overlapped["t1"].id
    # Someone who already had the gold item is not served it again.
    assert service.pick_gold_task(db, queue, overlapped["a"], random.Random(1)) is None
    queue.gold_rate = 0.3
    rng = random.Random(7)
    hits = sum(service.pick_gold_task(db, queue, newcomer, rng) is not None for _ in range(1000))
    assert 240 <= hits <= 360


def test_throughput_and_time_per_task(db, factory, overlapped) -> None:
    queue = factory.queue(TaskKind.demonstration)
    demonstration(db, factory.task(queue), overlapped["a"], "answer", time_spent_ms=80_000)
    speed = service.throughput(db)
    labels, recent, median_s = speed[overlapped["a"].id]
    # a: rankings of 20 s and 30 s, a demonstration of 80 s -> median 30 s.
    assert (labels, recent, median_s) == (3, 3, 30.0)
    rows = {r.user.username: r for r in service.labeler_stats(db, get_settings())}
    assert rows["qa_ann"].labels_per_hour == 120.0


def test_review_lists_and_details(db, overlapped) -> None:
    labels = review.recent_labels(db, queue_id=overlapped["queue"].id, user_id=overlapped["c"].id)
    assert [lab.kind for lab in labels] == ["ranking", "ranking"]
    detail = review.ranking_detail(db, labels[0].id)
    assert [e.tier for e, _ in detail["entries"]] == sorted(e.tier for e, _ in detail["entries"])


def _ranking_of(db, task, user) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.rankings.models import Ranking

    return db.scalar(select(Ranking.id).where(Ranking.task_id == task.id, Ranking.user_id == user.id))


def test_gold_items_stay_open_for_every_labeler_and_revert(db, overlapped) -> None:
    task = overlapped["t2"]
    task.status, task.done_count = "done", 2
    db.flush()
    service.mark_gold_from_ranking(db, _ranking_of(db, task, overlapped["a"]))
    assert task.is_gold and task.status == "open" and task.overlap >= 1000
    assert task.gold_answer["ranks"] and task.gold_answer["from_ranking"]
    service.unmark_gold(db, task.id)
    assert not task.is_gold and task.overlap == 3 and task.status == "open"
    task.done_count = 3
    service.mark_gold_from_ranking(db, _ranking_of(db, task, overlapped["a"]))
    service.unmark_gold(db, task.id)
    assert task.status == "done"
