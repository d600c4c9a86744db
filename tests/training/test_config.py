"""Stage settings: every numeric one has a range, the presets sit inside them, and a value outside
is refused by name (the round form, `--set` and `config_from_dict` all build configs)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from training.config import (
    PRESETS,
    RANGES,
    DPOConfig,
    ImplicitRewardConfig,
    PPOConfig,
    RewardConfig,
    SamplingParams,
    SFTConfig,
    StageSettings,
    apply_overrides,
)

STAGE_CONFIGS: dict[str, type[StageSettings]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    "ppo": PPOConfig,
    "dpo": DPOConfig,
    "implicit_reward": ImplicitRewardConfig,
}


@pytest.mark.parametrize("cls", STAGE_CONFIGS.values(), ids=STAGE_CONFIGS)
def test_every_numeric_stage_setting_has_a_range(cls: type) -> None:
    hints = typing.get_type_hints(cls)
    numeric = [
        f.name
        for f in dataclasses.fields(cls)
        if any(t in str(hints[f.name]) for t in ("int", "float")) and "tuple" not in str(hints[f.name])
    ]
    assert numeric and [n for n in numeric if n not in RANGES] == []


@pytest.mark.parametrize("preset", PRESETS)
def test_defaults_and_presets_are_in_range(preset: str) -> None:
    for stage, cls in STAGE_CONFIGS.items():
        cls(**PRESETS[preset].get(stage, {}))  # raises ValueError on a value out of range


@pytest.mark.parametrize(
    ("cls", "setting", "value", "message"),
    [
        (SFTConfig, "batch_size", 0, "batch_size must be 1 or more, not 0"),  # was a ZeroDivisionError
        (SFTConfig, "epochs", 0, "epochs must be 1 or more, not 0"),  # was a model trained on nothing
        (SFTConfig, "select_by", "best", "select_by must be one of auto, rm, loss, last, not 'best'"),
        (RewardConfig, "early_stopping_min_pairs", -1, "early_stopping_min_pairs must be 0 or more, not -1"),
        (PPOConfig, "temperature", 0.0, "temperature must be above 0, not 0.0"),
        (PPOConfig, "lam", 1.5, "lam must be from 0 to 1, not 1.5"),
        (DPOConfig, "label_smoothing", 0.5, "label_smoothing must be from 0 to 0.49, not 0.5"),
        (DPOConfig, "loss_type", "hinge", "loss_type must be one of sigmoid, ipo, not 'hinge'"),
        (ImplicitRewardConfig, "beta", -0.1, "beta must be above 0, not -0.1"),
    ],
)
def test_a_value_out_of_range_is_refused_by_name(cls: type, setting: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        cls(**{setting: value})
    with pytest.raises(SystemExit, match=f"^setting {message}$"):  # the CLI's --set
        apply_overrides(cls(), [f"{setting}={value}"])


def test_none_where_allowed_and_greedy_sampling_pass() -> None:
    assert ImplicitRewardConfig(beta=None).beta is None and PPOConfig(ema_decay=None).ema_decay is None
    assert SamplingParams(temperature=0.0).to_dict()["temperature"] == 0.0  # greedy: not a stage setting
