"""Next-task selection: priority, leases (expiry, renewal, return to pool), overlap, never twice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import utcnow
from app.demonstrations.service import submit_demonstration
from app.enums import AssignmentStatus, PIIStatus, TaskKind, TaskStatus
from app.errors import AppError, Conflict, Forbidden
from app.labeling import service
from app.labeling.models import Assignment, Task
from app.rankings.models import Completion


def _expire(db, a: Assignment) -> None:
    a.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.flush()


def test_next_task_follows_queue_priority_then_age(db, factory) -> None:
    low = factory.queue(TaskKind.demonstration, priority=1)
    high = factory.queue(TaskKind.demonstration, priority=5)
    factory.task(low)
    first_high, _ = factory.task(high), factory.task(high)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None and a.task_id == first_high.id
    assert a.status == AssignmentStatus.leased.value
    assert a.lease_expires_at > utcnow()


def test_holding_a_lease_returns_it_instead_of_a_new_one(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q), factory.task(q)
    user = factory.user()
    a = service.next_task(db, user, q.id)
    b = service.next_task(db, user, q.id)
    assert a is not None and b is not None and a.id == b.id
    assert db.query(Assignment).filter_by(user_id=user.id).count() == 1


def test_lease_records_latest_guideline_and_random_display_order(db, factory) -> None:
    from app.prompts.models import GuidelineVersion

    q = factory.queue(TaskKind.ranking, k=9)
    db.add(GuidelineVersion(queue_id=q.id, version=2, body_md="v2"))
    db.flush()
    orders = set()
    for _ in range(6):
        t = factory.task(q, overlap=1)
        a = service.next_task(db, factory.user(), q.id)
        assert a is not None and a.task_id == t.id
        ids = [c.id for c in db.query(Completion).filter_by(task_id=t.id).order_by(Completion.position)]
        assert sorted(a.display_order) == sorted(ids)
        orders.add(tuple(ids.index(c) for c in a.display_order))
        latest = db.query(GuidelineVersion).filter_by(queue_id=q.id, version=2).one()
        assert a.guideline_version_id == latest.id
    # 6 shuffles of 9 items: all identical would mean no shuffle (chance 1 in 362880^5).
    assert len(orders) > 1


def test_overlap_serves_distinct_labelers_then_stops(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration, overlap=2)
    t = factory.task(q)
    u1, u2, u3 = factory.user(), factory.user(), factory.user()
    a1, a2 = service.next_task(db, u1), service.next_task(db, u2)
    assert a1 is not None and a2 is not None and a1.task_id == a2.task_id == t.id
    assert service.next_task(db, u3) is None  # both slots leased


def test_never_twice_to_the_same_labeler_after_submit(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration, overlap=3)
    factory.task(q)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None
    submit_demonstration(db, user, a.id, "An answer.")
    assert service.next_task(db, user) is None
    assert service.next_task(db, factory.user()) is not None


def test_skipped_task_never_served_again_to_skipper(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    t = factory.task(q)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None
    service.skip(db, user, a.id, "Unclear", discard_draft=False)
    assert a.status == AssignmentStatus.skipped.value and a.skip_reason == "Unclear"
    assert service.next_task(db, user) is None
    other = service.next_task(db, factory.user())
    assert other is not None and other.task_id == t.id  # the slot went back to the pool


def test_skip_needs_a_reason_and_confirmation_of_a_draft(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None
    with pytest.raises(AppError, match="why"):
        service.skip(db, user, a.id, "  ", discard_draft=True)
    service.save_draft(db, user, a.id, "half an hour of writing")
    with pytest.raises(AppError, match="draft"):
        service.skip(db, user, a.id, "Other", discard_draft=False)
    assert a.status == AssignmentStatus.leased.value
    service.skip(db, user, a.id, "Other", discard_draft=True)
    assert a.status == AssignmentStatus.skipped.value


def test_never_served_to_the_prompt_author(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    author = factory.user()
    p = factory.prompt(q, author_id=author.id)
    factory.task(q, p)
    assert service.next_task(db, author) is None
    assert service.next_task(db, factory.user()) is not None


@pytest.mark.parametrize("status", [PIIStatus.unchecked, PIIStatus.held, PIIStatus.rejected])
def test_prompts_not_cleared_for_personal_data_are_never_served(db, factory, status) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q, factory.prompt(q, pii_status=status.value))
    assert service.next_task(db, factory.user()) is None


def test_redacted_prompts_are_served(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q, factory.prompt(q, pii_status=PIIStatus.redacted.value))
    assert service.next_task(db, factory.user()) is not None


def test_paused_queue_and_paused_user_get_nothing(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration, is_paused=True)
    factory.task(q)
    assert service.next_task(db, factory.user()) is None
    q.is_paused = False
    paused = factory.user()
    paused.is_paused = True
    db.flush()
    with pytest.raises(Forbidden):
        service.next_task(db, paused)


def test_expired_lease_returns_the_slot_to_the_pool(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    t = factory.task(q)
    u1, u2 = factory.user(), factory.user()
    a1 = service.next_task(db, u1)
    assert a1 is not None and service.next_task(db, u2) is None
    _expire(db, a1)
    a2 = service.next_task(db, u2)
    assert a2 is not None and a2.task_id == t.id
    db.refresh(a1)
    assert a1.status == AssignmentStatus.expired.value  # marked when its slot was re-leased
    a2.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert service.expire_leases(db) == 1
    db.refresh(a2)
    assert a2.status == AssignmentStatus.expired.value


def test_renewal_extends_the_lease(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None
    a.lease_expires_at = utcnow() + timedelta(seconds=5)
    db.flush()
    service.renew(db, user, a.id)
    assert a.lease_expires_at > utcnow() + timedelta(seconds=60)


def test_expired_lease_is_revived_when_the_slot_is_still_free(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None
    service.save_draft(db, user, a.id, "my draft")
    _expire(db, a)
    again = service.next_task(db, user)
    assert again is not None and again.id == a.id and again.draft_text == "my draft"
    assert service.lease_is_live(again)


def test_renewing_a_lost_lease_is_refused(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    u1, u2 = factory.user(), factory.user()
    a1 = service.next_task(db, u1)
    assert a1 is not None
    _expire(db, a1)
    assert service.next_task(db, u2) is not None
    with pytest.raises(Conflict, match="went to another labeler"):
        service.renew(db, u1, a1.id)
    with pytest.raises(Conflict, match="went to another labeler"):
        service.save_draft(db, u1, a1.id, "late text")


def test_draft_is_saved_on_the_server(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    user = factory.user()
    a = service.next_task(db, user)
    assert a is not None
    service.save_draft(db, user, a.id, "first words")
    db.expire_all()
    assert db.get(Assignment, a.id).draft_text == "first words"  # type: ignore[union-attr]


def test_other_labelers_assignments_are_not_reachable(db, factory) -> None:
    from app.errors import NotFound

    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    a = service.next_task(db, factory.user())
    assert a is not None
    with pytest.raises(NotFound):
        service.save_draft(db, factory.user(), a.id, "hijack")


def test_done_task_leaves_the_pool_and_counts(db, factory) -> None:
    q = factory.queue(TaskKind.demonstration, overlap=2)
    t = factory.task(q)
    assert service.open_task_count(db, q.id) == 1
    for _ in range(2):
        user = factory.user()
        a = service.next_task(db, user)
        assert a is not None
        submit_demonstration(db, user, a.id, "answer")
    assert t.status == TaskStatus.done.value and t.done_count == 2 and t.completed_at is not None
    assert service.open_task_count(db, q.id) == 0


def test_stocking_functions_validate_their_queue(db, factory) -> None:
    rq = factory.queue(TaskKind.ranking, k=4)
    dq = factory.queue(TaskKind.demonstration, overlap=3)
    wq = factory.queue(TaskKind.write_prompt)
    p = factory.prompt(rq)
    with pytest.raises(AppError, match="4 to 9"):
        service.add_ranking_task(db, rq, p, [Completion(text="x")] * 3)
    t = service.add_ranking_task(db, rq, p, [Completion(text=f"c{i}") for i in range(4)])
    stored = db.query(Completion).filter_by(task_id=t.id).order_by(Completion.position)
    assert [c.position for c in stored] == [0, 1, 2, 3]
    assert service.create_tasks(db, rq, [p.id]) == 0  # ranking tasks come with completions
    made = [factory.prompt(dq).id, factory.prompt(dq).id]
    assert service.create_tasks(db, dq, made + made[:1]) == 2
    assert service.create_tasks(db, dq, made) == 0  # never a second task for the same prompt
    tasks = db.query(Task).filter(Task.prompt_id.in_(made)).all()
    assert [x.overlap for x in tasks] == [3, 3]
    with pytest.raises(AppError, match="Unknown"):
        service.create_write_prompt_tasks(db, wq, ["poem"])
    assert len(service.create_write_prompt_tasks(db, wq, ["plain", "few_shot", "use_case"])) == 3
