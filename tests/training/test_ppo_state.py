"""Resumable PPO state: a checkpoint is restored whole or not at all."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from training.ppo_state import load_state, save_state

CONFIG = {"lr": 1e-5, "runtime": {"threads": 1}}


def _parts(value: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    policy = torch.nn.Linear(2, 2)
    groups = [{"params": list(policy.parameters())}]
    parts: dict[str, Any] = {"policy": policy, "rng": random.Random(1)}
    if value:
        parts["value"] = torch.nn.Linear(2, 1)
        groups.append({"params": list(parts["value"].parameters())})
    parts["opt"] = torch.optim.AdamW(groups)
    return parts


def _save_with_a_value_model(path: Path) -> None:
    """A checkpoint after iteration 4 whose policy weights are all 3."""
    saved = _parts(value=True)
    with torch.no_grad():
        saved["policy"].weight.fill_(3.0)
    save_state(path, 4, saved, CONFIG)


def test_a_checkpoint_comes_back_whole(tmp_path: Path) -> None:
    _save_with_a_value_model(tmp_path / "c")
    parts = _parts(value=True)
    state = load_state(tmp_path / "c", parts, {**CONFIG, "runtime": {"threads": 2}})  # runtime may differ
    assert state is not None and state["iteration"] == 4
    assert torch.equal(parts["policy"].weight, torch.full((2, 2), 3.0))


def test_a_checkpoint_whose_parts_do_not_fit_restores_nothing(tmp_path: Path) -> None:
    """E.g. a leave-one-out run's checkpoint from a version that still built a value model."""
    _save_with_a_value_model(tmp_path / "c")
    parts = _parts(value=False)
    before = parts["policy"].weight.clone()
    rng_state = parts["rng"].getstate()
    assert load_state(tmp_path / "c", parts, CONFIG) is None
    assert torch.equal(parts["policy"].weight, before)
    assert parts["rng"].getstate() == rng_state
    assert load_state(tmp_path / "c", _parts(value=True), {**CONFIG, "lr": 2e-5}) is None  # other settings
