"""The paired interval the run page and the deploy gate read: mean gain per prompt with a 95 % interval."""

from __future__ import annotations

import math

from training.metrics import paired_diff_ci


def test_paired_mean_difference_and_its_interval() -> None:
    out = paired_diff_ci([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 2.5, 3.0])
    diffs = [0.5, 1.0, 0.5, 1.0]
    sd = math.sqrt(sum((d - 0.75) ** 2 for d in diffs) / 3)
    assert out["mean"] == 0.75 and out["n"] == 4
    assert math.isclose(out["hi"] - out["mean"], 1.96 * sd / 2)
    assert math.isclose(out["mean"] - out["lo"], out["hi"] - out["mean"])


def test_no_difference_gives_an_interval_around_zero() -> None:
    out = paired_diff_ci([0.1, -0.2, 0.3, 0.0], [0.1, -0.2, 0.3, 0.0])
    assert out == {"mean": 0.0, "lo": 0.0, "hi": 0.0, "n": 4}
