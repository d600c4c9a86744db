"""The labeler home numbers: counts, time per task, pairwise agreement on comparisons."""

from __future__ import annotations

from app.enums import TaskKind
from app.labeling import service, stats
from app.rankings.schemas import parse_ranking_form
from app.rankings.service import letter, submit_ranking


def _rank(db, user, queue_id: int, tiers_by_position: list[int]) -> None:
    from app.rankings.models import Completion

    a = service.next_task(db, user, queue_id)
    assert a is not None
    by_pos = {c.id: c.position for c in db.query(Completion).filter_by(task_id=a.task_id)}
    form = {}
    for i, cid in enumerate(a.display_order):
        form[f"tier_{letter(i)}"] = [str(tiers_by_position[by_pos[cid]])]
        form[f"likert_{letter(i)}"] = ["4"]
    submit_ranking(db, user, a.id, parse_ranking_form(form))


def test_pairwise_agreement_ignores_ties_and_counts_directions(db, factory) -> None:
    q = factory.queue(TaskKind.ranking, k=4, overlap=2)
    factory.task(q)
    me, other = factory.user(), factory.user()
    _rank(db, me, q.id, [1, 2, 3, 4])
    assert stats.pairwise_agreement(db, me.id) == (0, 0)  # no overlap yet
    _rank(db, other, q.id, [1, 1, 4, 3])
    # Pairs (by position) both ordered strictly: 0-2, 0-3, 1-2, 1-3 agree; 2-3 disagrees; 0-1 is a tie.
    assert stats.pairwise_agreement(db, me.id) == (4, 5)
    s = stats.summary(db, me)
    assert (s.done_today, s.done_total) == (1, 1) and s.agreement == 0.8
    assert s.median_seconds is not None and s.median_seconds >= 0


def test_queue_rows_show_availability_and_held_leases(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration, overlap=1)
    factory.task(q), factory.task(q)
    user = factory.user()
    [row] = [r for r in stats.queues_for(db, user) if r.queue.id == q.id]
    assert (row.available, row.open_tasks, row.held_assignment_id) == (2, 2, None)
    a = service.next_task(db, user, q.id)
    assert a is not None
    [row] = [r for r in stats.queues_for(db, user) if r.queue.id == q.id]
    assert row.held_assignment_id == a.id and row.available == 1
    other = factory.user()
    [row] = [r for r in stats.queues_for(db, other) if r.queue.id == q.id]
    assert row.available == 1
