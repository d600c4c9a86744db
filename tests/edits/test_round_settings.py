"""The round form and stage registry carry edit_pair_weight to the RM and DPO stages."""

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
