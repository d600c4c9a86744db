"""The reward model keeps its best-on-valid weights only where the valid split can tell steps apart.

On a demo's few dozen valid pairs every check sits near chance and the best of them is noise: the
quick round's RM kept step 1 (an untrained head) in 3 of 8 seeds and failed the deploy gate.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.config import RewardConfig, RuntimeConfig
from training.data import ComparisonGroup

CPU = RuntimeConfig(device="cpu")


def _groups(pairs_each: list[int]) -> list[ComparisonGroup]:
    return [
        ComparisonGroup(prompt=f"p{i}", completions=["a", "b", "c"], pairs=[(0, 1)] * n)
        for i, n in enumerate(pairs_each)
    ]


def test_early_stopping_needs_enough_valid_pairs() -> None:
    from training.reward import early_stopping_applies

    cfg = RewardConfig(early_stopping_min_pairs=10)
    assert early_stopping_applies(cfg, _groups([6, 4]))
    assert not early_stopping_applies(cfg, _groups([6, 3]))
    assert not early_stopping_applies(cfg, [])
    off = RewardConfig(early_stopping=False, early_stopping_min_pairs=0)
    assert not early_stopping_applies(off, _groups([9]))


def test_a_negative_minimum_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="early_stopping_min_pairs must be 0 or more"):
        RewardConfig(early_stopping_min_pairs=-1)


def _metrics(out: Path) -> dict:
    return dict(json.loads((out / "manifest.json").read_text())["metrics"])


def test_reward_stage_selects_on_valid_only_above_the_minimum(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from training.reward import run_reward

    base = {"batch_size": 8, "epochs": 1, "min_steps": 6, "max_length": 64, "runtime": CPU}
    few = _metrics(run_reward(RewardConfig(early_stopping_min_pairs=10**6, **base), world_batch, micro_base,
                              tmp_path / "few"))
    many = _metrics(run_reward(RewardConfig(early_stopping_min_pairs=1, **base), world_batch, micro_base,
                               tmp_path / "many"))
    assert "selected_step" not in few and few["valid_pairs"] >= 1
    assert 1 <= many["selected_step"] <= many["steps"]
    assert many["steps"] >= 6  # the loop's steps, min_steps included
