"""How many epochs the shared loop runs when a stage sets a floor of optimizer steps."""

from __future__ import annotations

from training.loop import epochs_for


def test_min_steps_adds_epochs_on_a_small_data_set() -> None:
    assert epochs_for(steps_per_epoch=1, epochs=4, min_steps=64) == 64  # 10 demonstrations at batch 16
    assert epochs_for(steps_per_epoch=3, epochs=4, min_steps=64) == 22  # ceil(64 / 3)
    assert epochs_for(steps_per_epoch=40, epochs=4, min_steps=64) == 4  # enough data: epochs as set
    assert epochs_for(steps_per_epoch=5, epochs=4, min_steps=0) == 4
    assert epochs_for(steps_per_epoch=0, epochs=2, min_steps=64) == 2  # nothing to train on
