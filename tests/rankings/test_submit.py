"""Ranking submissions: exactly the task's completions once each, tiers, ratings, flags, once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import utcnow
from app.enums import FLAGS, AssignmentStatus, TaskKind
from app.errors import AlreadySubmitted, Conflict
from app.labeling import service as labeling
from app.rankings.models import Ranking, RankingEntry
from app.rankings.schemas import comparison_pairs, dense_tiers, parse_ranking_form
from app.rankings.service import RankingInvalid, letter, submit_ranking


def _leased(db, factory, k: int = 4, overlap: int = 1):
    q = factory.queue(TaskKind.ranking, k=k, overlap=overlap)
    t = factory.task(q)
    user = factory.user()
    a = labeling.next_task(db, user, q.id)
    assert a is not None and a.task_id == t.id
    return user, a


def _form(order: list[int], tiers: list[int | str], likert: list[int | str] | None = None,
          **extra: list[str]) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {}
    for i in range(len(order)):
        form[f"tier_{letter(i)}"] = [str(tiers[i])]
        form[f"likert_{letter(i)}"] = [str((likert or [4] * len(order))[i])]
    form.update(extra)
    return form


def _rejects(db, user, a, form, match: str) -> None:
    with pytest.raises(RankingInvalid) as err:
        submit_ranking(db, user, a.id, parse_ranking_form(form))
    assert any(match in e for e in err.value.errors), err.value.errors
    assert db.query(Ranking).filter_by(assignment_id=a.id).count() == 0
    assert a.status == AssignmentStatus.leased.value


def test_valid_ranking_with_a_tie_is_stored_exactly(db, factory) -> None:
    user, a = _leased(db, factory)
    order = a.display_order
    form = _form(order, [2, 1, 1, 3], [5, 7, 6, 1])
    form[f"flags_{letter(3)}"] = ["hallucination", "harmful_advice"]
    form[f"comment_{letter(3)}"] = ["made up facts"]
    form["comment"] = ["hard one"]
    r = submit_ranking(db, user, a.id, parse_ranking_form(form))
    entries = {e.completion_id: e for e in db.query(RankingEntry).filter_by(ranking_id=r.id)}
    assert {cid: entries[cid].tier for cid in order} == {order[0]: 2, order[1]: 1, order[2]: 1, order[3]: 3}
    assert [entries[cid].likert for cid in order] == [5, 7, 6, 1]
    assert entries[order[3]].flags == ["hallucination", "harmful_advice"]
    assert entries[order[3]].comment == "made up facts" and r.comment == "hard one"
    assert r.display_order == order and r.user_id == user.id
    assert r.guideline_version_id == a.guideline_version_id is not None
    assert a.status == AssignmentStatus.submitted.value and r.time_spent_ms == a.time_spent_ms >= 0


def test_tiers_are_renumbered_densely(db, factory) -> None:
    user, a = _leased(db, factory)
    r = submit_ranking(db, user, a.id, parse_ranking_form(_form(a.display_order, [4, 1, 4, 2])))
    tiers = {e.completion_id: e.tier for e in r.entries}
    assert [tiers[c] for c in a.display_order] == [3, 1, 3, 2]


def test_missing_completion_is_rejected(db, factory) -> None:
    user, a = _leased(db, factory)
    form = _form(a.display_order, [1, 2, 3, 4])
    del form[f"tier_{letter(2)}"]
    _rejects(db, user, a, form, "Completion C has no rank")


def test_completion_of_another_task_is_rejected(db, factory) -> None:
    user, a = _leased(db, factory)
    stranger = "E"  # a fifth letter: this K = 4 task shows A..D
    form = _form(a.display_order, [1, 2, 3, 4])
    form[f"tier_{stranger}"] = ["1"]
    form[f"likert_{stranger}"] = ["3"]
    _rejects(db, user, a, form, "do not belong to this task")


def test_completion_placed_twice_is_rejected(db, factory) -> None:
    user, a = _leased(db, factory)
    form = _form(a.display_order, [1, 2, 3, 4])
    form[f"tier_{letter(0)}"] = ["1", "2"]
    _rejects(db, user, a, form, "placed 2 times")


@pytest.mark.parametrize("tier", [0, 5, "x", "-1"])
def test_tier_out_of_range_or_not_a_number_is_rejected(db, factory, tier) -> None:
    user, a = _leased(db, factory)
    _rejects(db, user, a, _form(a.display_order, [tier, 2, 3, 4]), "Completion A")


@pytest.mark.parametrize("likert", [0, 8, "good"])
def test_rating_out_of_range_is_rejected(db, factory, likert) -> None:
    user, a = _leased(db, factory)
    _rejects(db, user, a, _form(a.display_order, [1, 2, 3, 4], [likert, 3, 3, 3]), "Completion A")


def test_missing_rating_is_rejected(db, factory) -> None:
    user, a = _leased(db, factory)
    form = _form(a.display_order, [1, 2, 3, 4])
    del form[f"likert_{letter(1)}"]
    _rejects(db, user, a, form, "Completion B has no overall rating")


def test_unknown_flag_is_rejected(db, factory) -> None:
    user, a = _leased(db, factory)
    form = _form(a.display_order, [1, 2, 3, 4])
    form[f"flags_{letter(0)}"] = ["hallucination", "too_short"]
    _rejects(db, user, a, form, "unknown flag")


def test_every_known_flag_is_accepted(db, factory) -> None:
    user, a = _leased(db, factory)
    form = _form(a.display_order, [1, 2, 3, 4])
    form[f"flags_{letter(0)}"] = list(FLAGS)
    r = submit_ranking(db, user, a.id, parse_ranking_form(form))
    assert next(e for e in r.entries if e.completion_id == a.display_order[0]).flags == list(FLAGS)


def test_double_submit_stores_one_ranking(db, factory) -> None:
    user, a = _leased(db, factory, overlap=2)
    form = parse_ranking_form(_form(a.display_order, [1, 2, 3, 4]))
    r1 = submit_ranking(db, user, a.id, form)
    r2 = submit_ranking(db, user, a.id, parse_ranking_form(_form(a.display_order, [1, 2, 3, 4])))
    assert r1.id == r2.id  # the same ranking twice (a double click) is answered as stored
    with pytest.raises(AlreadySubmitted, match=r"already submitted .* was not stored"):
        submit_ranking(db, user, a.id, parse_ranking_form(_form(a.display_order, [4, 3, 2, 1])))
    assert db.query(Ranking).filter_by(assignment_id=a.id).count() == 1
    assert a.task.done_count == 1


def test_submit_after_lease_expired_and_slot_taken_is_refused(db, factory) -> None:
    user, a = _leased(db, factory)
    a.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert labeling.next_task(db, factory.user(), a.task.queue_id) is not None
    with pytest.raises(Conflict, match="went to another labeler"):
        submit_ranking(db, user, a.id, parse_ranking_form(_form(a.display_order, [1, 2, 3, 4])))
    assert db.query(Ranking).filter_by(assignment_id=a.id).count() == 0


def test_submit_after_lease_expired_with_slot_still_free_is_kept(db, factory) -> None:
    user, a = _leased(db, factory)
    a.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    r = submit_ranking(db, user, a.id, parse_ranking_form(_form(a.display_order, [1, 2, 3, 4])))
    assert r.id is not None and a.task.done_count == 1


def test_k9_all_tied_and_all_unacceptable(db, factory) -> None:
    user, a = _leased(db, factory, k=9)
    form = _form(a.display_order, [1] * 9, [1] * 9, all_unacceptable=["1"])
    r = submit_ranking(db, user, a.id, parse_ranking_form(form))
    assert r.all_unacceptable and {e.tier for e in r.entries} == {1} and len(r.entries) == 9


def test_pair_counting_and_dense_tiers() -> None:
    assert comparison_pairs({1: 1, 2: 2, 3: 3, 4: 4}) == 6
    assert comparison_pairs({1: 1, 2: 1, 3: 2, 4: 3}) == 5
    assert comparison_pairs({i: 1 for i in range(9)}) == 0
    assert dense_tiers({"A": 2, "B": 7, "C": 2}) == {"A": 1, "B": 2, "C": 1}


def test_ranking_draft_round_trips_and_empty_draft_is_empty(db, factory) -> None:
    from app.labeling.pages import task_page
    from app.rankings.schemas import from_draft, to_draft
    from app.rankings.service import save_ranking_draft

    user, a = _leased(db, factory)
    assert to_draft(parse_ranking_form({})) == ""
    form = {f"tier_{letter(0)}": ["2"], f"likert_{letter(1)}": ["6"],
            f"flags_{letter(1)}": ["opinion"], "comment": ["later"]}
    save_ranking_draft(db, user, a.id, parse_ranking_form(form))
    back = from_draft(a.draft_text)
    assert back is not None and back.entries[letter(0)].tier == 2
    page = task_page(db, user, a.id)
    assert page.tier_of(letter(0)) == 2 and page.comment == "later"
    assert page.state[letter(1)] == {"tier": None, "likert": 6, "flags": ["opinion"], "comment": ""}
    assert from_draft("not json") is None and from_draft("[1]") is None
