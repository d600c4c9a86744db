"""Reward-model uncertainty of a ranking task (active learning): pure math and scoring with an RM."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training.uncertainty import (
    binary_entropy,
    label_disagreement,
    margin_uncertainty,
    order_by_uncertainty,
    preference_probability,
    smallest_margin,
)


def test_preference_probability_is_a_stable_sigmoid() -> None:
    assert preference_probability(0.0) == 0.5
    assert preference_probability(2.0) == pytest.approx(1 / (1 + math.exp(-2)))
    assert preference_probability(-1000.0) == 0.0 and preference_probability(1000.0) == 1.0


def test_binary_entropy_bounds() -> None:
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert binary_entropy(0.1) == pytest.approx(binary_entropy(0.9))


def test_small_margins_mean_an_uncertain_task() -> None:
    assert margin_uncertainty([0.3, 0.3, 0.3, 0.3]) == pytest.approx(1.0)
    close, far = margin_uncertainty([0.0, 0.1, 0.2, 0.3]), margin_uncertainty([0.0, 3.0, 6.0, 9.0])
    assert 1.0 > close > far > 0.0
    # Shifting every score changes nothing: only margins matter.
    assert margin_uncertainty([5.0, 5.1, 5.2, 5.3]) == pytest.approx(close)
    assert smallest_margin([3.0, 0.0, 2.5, 9.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        margin_uncertainty([1.0])


def test_label_disagreement_counts_reversed_untied_pairs() -> None:
    assert label_disagreement([3.0, 2.0, 1.0], [1, 2, 3]) == 0.0
    assert label_disagreement([1.0, 2.0, 3.0], [1, 2, 3]) == 1.0
    assert label_disagreement([1.0, 2.0, 3.0], [1, 1, 2]) == pytest.approx(1.0)  # 2 untied, both reversed
    assert label_disagreement([1.0, 2.0], [1, 1]) == 0.0


def test_lease_order_puts_the_most_uncertain_first_and_unscored_last() -> None:
    assert order_by_uncertainty([0.2, None, 0.9, 0.2, 0.5]) == [2, 4, 0, 3, 1]


def test_task_uncertainties_with_a_reward_model(micro_base: Path) -> None:
    from training.active import score_groups, task_uncertainties
    from training.models import load_tokenizer, reward_model_from_lm

    rm, tok = reward_model_from_lm(micro_base)
    same = ("Say hi.", ["hello there", "hello there", "hello there"])
    mixed = ("Say hi.", ["hello there", "zzzz qqqq zzzz qqqq zzzz", "1 2 3 4 5 6 7 8 9"])
    scores = score_groups(rm, tok, [same, mixed])
    assert [len(s) for s in scores] == [3, 3]
    values = task_uncertainties("unused", [same, mixed], loaded=(rm, load_tokenizer(micro_base)))
    assert values[0] == pytest.approx(1.0)  # identical completions: the RM cannot order them
    assert 0.0 <= values[1] <= 1.0
    assert values[1] == pytest.approx(margin_uncertainty(scores[1]))
