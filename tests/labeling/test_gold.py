"""Gold items are injected at the queue's gold rate and never served in the ordinary order."""

from __future__ import annotations

from app.labeling import service


def test_gold_served_at_rate_one_and_once_per_labeler(db, factory) -> None:
    q = factory.queue("demonstration", gold_rate=1.0, overlap=1)
    gold = factory.task(q, is_gold=True, overlap=1000, gold_answer={"text": "known good"})
    plain = factory.task(q)
    user = factory.user("labeler")
    first = service.next_task(db, user, q.id)
    assert first is not None and first.task_id == gold.id
    first.status = "submitted"
    db.flush()
    second = service.next_task(db, user, q.id)
    assert second is not None and second.task_id == plain.id  # never the same gold item twice


def test_gold_never_served_when_rate_is_zero(db, factory) -> None:
    q = factory.queue("demonstration", gold_rate=0.0)
    factory.task(q, is_gold=True, overlap=1000)
    user = factory.user("labeler")
    assert service.next_task(db, user, q.id) is None


def test_written_prompt_with_personal_data_is_held(db, factory) -> None:
    from app.demonstrations import service as writing

    q = factory.queue("write_prompt")
    factory.task(q, hint="plain")
    user = factory.user("labeler")
    a = service.next_task(db, user, q.id)
    assert a is not None
    prompt = writing.submit_written_prompt(db, user, a.id, "Email jane.doe@example.com a summary of my bill.")
    assert prompt.pii_status == "held" and prompt.pii_findings
