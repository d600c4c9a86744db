"""Agreement numbers on hand-computed cases."""

from __future__ import annotations

import pytest

from app.quality.metrics import consensus, gold_score, kendall_tau_b, pair_agreement, tau_against_consensus


def test_pair_agreement_counts_strict_comparisons_only() -> None:
    a = {1: 1, 2: 2, 3: 3, 4: 4}
    assert pair_agreement(a, a) == (6, 6)
    # b swaps 3 and 4: 5 of 6 pairs agree.
    assert pair_agreement(a, {1: 1, 2: 2, 3: 4, 4: 3}) == (5, 6)
    # c ties 1 and 2 (that pair drops out) and reverses 1 vs 3: pairs (1,3)x (1,4)v (2,3)v (2,4)v (3,4)v
    c = {1: 2, 2: 2, 3: 1, 4: 3}
    assert pair_agreement(a, c) == (3, 5)
    assert pair_agreement({1: 1, 2: 1}, {1: 1, 2: 2}) == (0, 0)


def test_kendall_tau_b_against_hand_computed_values() -> None:
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # One swap among 4: C=5, D=1 -> (5-1)/6
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # x has a tie (pair 0,1): C=5, D=0, ties_x=1 -> 5 / sqrt(5*6)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / (30**0.5))
    assert kendall_tau_b([1, 1], [1, 2]) is None


def test_tau_against_the_consensus_of_the_others() -> None:
    me = {10: 1, 11: 2, 12: 3, 13: 4}
    others = [{10: 1, 11: 2, 12: 3, 13: 4}, {10: 2, 11: 1, 12: 3, 13: 4}]
    assert consensus(others) == {10: 1.5, 11: 1.5, 12: 3.0, 13: 4.0}
    # consensus ties 10 and 11: C=5, D=0, ties_y=1 -> 5 / sqrt(6*5)
    assert tau_against_consensus(me, others) == pytest.approx(5 / (30**0.5))
    assert tau_against_consensus(me, []) is None


def test_gold_score_is_the_share_of_gold_comparisons_matched() -> None:
    answer = {1: 1, 2: 2, 3: 2, 4: 3}  # 5 strict pairs: (1,2)(1,3)(1,4)(2,4)(3,4)
    assert gold_score(answer, {1: 1, 2: 2, 3: 3, 4: 4}) == 1.0
    # Tying 1 and 2 misses (1,2); reversing 3 and 4 misses (3,4): 3 of 5.
    assert gold_score(answer, {1: 1, 2: 1, 3: 4, 4: 3}) == pytest.approx(3 / 5)
    assert gold_score({1: 1, 2: 1}, {1: 1, 2: 2}) is None
