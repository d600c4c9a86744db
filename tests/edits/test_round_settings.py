"""The round form and stage registry carry edit_pair_weight to the RM and DPO stages, and refuse
stage settings outside their ranges."""

from __future__ import annotations

import pytest

from app.ops.forms import FormError, parse_settings
from app.runs import stages


@pytest.mark.parametrize("stage", ["reward", "dpo"])
def test_edit_pair_weight_is_a_round_setting(stage: str) -> None:
    assert parse_settings(stage, '{"edit_pair_weight": 0.5}') == {"edit_pair_weight": 0.5}
    assert parse_settings(stage, '{"edit_pair_weight": 0}') == {"edit_pair_weight": 0}
    assert stages.get(stage).defaults()["edit_pair_weight"] == 1.0
    assert stages.get(stage).build_config({"edit_pair_weight": 0.25}).edit_pair_weight == 0.25
    with pytest.raises(FormError, match="edit_pair_weight must be 0 or more"):
        parse_settings(stage, '{"edit_pair_weight": -1}')
    with pytest.raises(FormError, match="edit_pair_weight should look like"):
        parse_settings(stage, '{"edit_pair_weight": "half"}')


def test_a_stage_setting_out_of_range_is_refused_on_the_form() -> None:
    """It used to pass the form and fail the round in the worker (batch_size 0: a ZeroDivisionError)."""
    with pytest.raises(FormError, match=r"^SFT settings: batch_size must be 1 or more, not 0\.$"):
        parse_settings("sft", '{"batch_size": 0}')
    with pytest.raises(FormError, match=r"^PPO settings: lr must be above 0, not -1\.$"):
        parse_settings("ppo", '{"lr": -1}')
