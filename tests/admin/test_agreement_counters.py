"""Agreement kept incrementally: after any sequence of submits (skips, double submits, a gold item
ranked again, concurrent submits of one task) the counters equal a from-scratch recomputation,
and the polled queue-progress fragment costs a fixed number of statements, none over the rankings."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from app.auth.models import User
from app.db import session_factory
from app.enums import TaskKind
from app.errors import AlreadySubmitted
from app.labeling import service as labeling
from app.labeling.models import Assignment
from app.quality import counters, service
from app.rankings.models import Ranking
from app.rankings.schemas import parse_ranking_form
from app.rankings.service import letter, submit_ranking
from tests.admin.builders import ranking
from tests.factories import Factory
from tests.helpers import sql_statements


def _form(k: int, rng: random.Random) -> Any:
    """A random ranking of k completions (ties allowed) as the parsed form."""
    return parse_ranking_form(
        {
            **{f"tier_{letter(i)}": [str(rng.randint(1, k))] for i in range(k)},
            **{f"likert_{letter(i)}": ["4"] for i in range(k)},
        }
    )


def _same(a: counters.Agreement, b: counters.Agreement) -> None:
    assert (a.items, a.agree, a.compared, a.tau_n) == (b.items, b.agree, b.compared, len(b.taus))
    assert a.tau == pytest.approx(b.tau, abs=1e-9) if b.taus else a.tau is None


def _assert_matches_recomputation(db, queue_id: int) -> None:  # type: ignore[no-untyped-def]
    total, per_user = counters.queue_agreement(db, queue_id)
    fresh_total, fresh_users = service.agreement(db, queue_id)
    _same(total, fresh_total)
    assert {u for u, a in per_user.items() if a.items or a.compared} == set(fresh_users)
    for user_id, fresh in fresh_users.items():
        _same(per_user[user_id], fresh)
    everything, _, users_everywhere = counters.all_agreement(db)
    _same(everything, service.agreement(db)[0])
    for user_id, fresh in service.agreement(db)[1].items():
        _same(users_everywhere[user_id], fresh)
    stored = db.execute(select(Ranking.user_id, func.count()).group_by(Ranking.user_id)).all()
    assert {u: n for u, n in counters.labels_per_user(db).items() if n} == dict(stored)


def test_counters_equal_a_recomputation_after_submits_skips_and_a_gold_relabel(db, factory) -> None:
    rng = random.Random(13)
    queue = factory.queue(TaskKind.ranking, k=4, overlap=3)
    tasks = [factory.task(queue) for _ in range(5)]
    people = [factory.user() for _ in range(5)]
    for step in range(40):
        user = rng.choice(people)
        a = labeling.next_task(db, user, queue.id)
        if a is None:
            continue
        if step % 7 == 3:
            labeling.skip(db, user, a.id, "too hard", discard_draft=True)
            continue
        sub = _form(4, rng)
        submit_ranking(db, user, a.id, sub)
        submit_ranking(db, user, a.id, sub)  # a double click is answered as stored, counted once
        with pytest.raises(AlreadySubmitted):
            submit_ranking(db, user, a.id, _other(sub))
        _assert_matches_recomputation(db, queue.id)
    # An admin makes a ranked task gold: it reopens and is ranked again by everyone left.
    first = db.scalar(select(Ranking).where(Ranking.task_id == tasks[0].id).order_by(Ranking.id).limit(1))
    assert first is not None
    service.mark_gold_from_ranking(db, first.id)
    queue.gold_rate = 1.0  # every lease now serves the gold item to whoever has not had it
    db.flush()
    for user in people:
        had = select(Assignment).where(Assignment.task_id == tasks[0].id, Assignment.user_id == user.id)
        if db.scalar(had) is None:
            a = labeling.next_task(db, user, queue.id)
            assert a is not None and a.task_id == tasks[0].id
            submit_ranking(db, user, a.id, _form(4, rng))
    _assert_matches_recomputation(db, queue.id)
    assert counters.queue_agreement(db, queue.id)[0].items >= 3


def _other(sub: Any) -> Any:
    """The same submission with the first two tiers swapped (a different ranking)."""
    form = {f"tier_{k}": [str(e.tier)] for k, e in sub.entries.items()}
    form |= {f"likert_{k}": ["4"] for k in sub.entries}
    a, b = form["tier_A"], form["tier_B"]
    if a == b:
        form["tier_A"] = ["1" if a != ["1"] else "2"]
    else:
        form["tier_A"], form["tier_B"] = b, a
    return parse_ranking_form(form)


def test_rebuild_gives_the_same_counters(db, factory) -> None:
    queue = factory.queue(TaskKind.ranking, k=4, overlap=3)
    a, b, c = factory.user(), factory.user(), factory.user()
    t1, t2 = factory.task(queue), factory.task(queue)
    for user, tiers in ((a, [1, 2, 3, 4]), (b, [2, 1, 3, 4]), (c, [1, 1, 2, 2])):
        ranking(db, t1, user, tiers)
    ranking(db, t2, a, [4, 3, 2, 1])
    ranking(db, t2, c, [1, 2, 3, 4])
    before = counters.queue_agreement(db, queue.id)
    assert counters.rebuild(db) == 2
    db.expire_all()
    after = counters.queue_agreement(db, queue.id)
    _same(after[0], service.agreement(db, queue.id)[0])
    assert (before[0].agree, before[0].compared, before[0].items) == (after[0].agree, after[0].compared, 2)


def test_concurrent_submits_of_one_task_are_all_counted(committed_db) -> None:
    if committed_db.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers; the row lock race needs PostgreSQL")
    f = Factory(committed_db)
    queue = f.queue(TaskKind.ranking, k=4, overlap=4)
    f.task(queue)
    users = [f.user() for _ in range(4)]
    leases = [labeling.next_task(committed_db, u, queue.id) for u in users]
    ids = [(u.id, a.id) for u, a in zip(users, leases, strict=True) if a is not None]
    assert len(ids) == 4
    committed_db.commit()
    rng = random.Random(5)
    forms = [_form(4, rng) for _ in ids]
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        with session_factory()() as s:
            try:
                uid, aid = ids[i]
                submit_ranking(s, s.get(User, uid), aid, forms[i])  # type: ignore[arg-type]
                time.sleep(0.3)  # hold the task lock while the others wait for it
                s.commit()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    committed_db.expire_all()
    _assert_matches_recomputation(committed_db, queue.id)
    assert counters.queue_agreement(committed_db, queue.id)[0].items == 1


def _add_overlapped(db, factory, queue, people, n_tasks: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(n_tasks)
    for _ in range(n_tasks):
        task = factory.task(queue)
        for user in people:
            ranking(db, task, user, [rng.randint(1, 4) for _ in range(4)])


def test_progress_fragment_statements_do_not_grow_with_the_rankings(login, db, factory) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.ranking, k=4, overlap=3)
    people = [factory.user() for _ in range(3)]
    _add_overlapped(db, factory, queue, people, 2)
    web.get(f"/admin/queues/{queue.id}/progress")  # warm caches (templates, session)
    with sql_statements() as small:
        page = web.get(f"/admin/queues/{queue.id}/progress")
    assert "on 2 overlapped items" in page.text
    _add_overlapped(db, factory, queue, people, 40)
    with sql_statements() as large:
        page = web.get(f"/admin/queues/{queue.id}/progress")
    assert "on 42 overlapped items" in page.text
    assert len(large) == len(small) <= 20
    assert not [s for s in large if "ranking_entries" in s or "FROM rankings" in s]
