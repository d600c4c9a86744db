"""Shared fixtures: a micro base model (about a second to build) and a small world export batch."""

from __future__ import annotations

import random
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def micro_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer base model pre-trained for a few steps on the world corpus."""
    from training.world.base import ensure_base_model

    return ensure_base_model(tmp_path_factory.mktemp("models"), "micro")


@pytest.fixture(scope="session")
def world_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export batch of world prompts: demonstrations, K=4 rankings of world candidates, prompts."""
    from training.data import write_batch
    from training.world import SimulatedLabeler, candidate_completions, make_prompts
    from training.world.simulate import demonstration_records, prompt_records, ranking_records, split_by_user

    prompts = make_prompts(80, seed=3)
    splits = split_by_user(prompts, seed=3)
    labelers = [SimulatedLabeler(s) for s in range(3)]
    rng = random.Random(0)
    comps = [candidate_completions(p, 4, rng) for p in prompts]
    return write_batch(
        tmp_path_factory.mktemp("batches") / "b1",
        sft=demonstration_records(prompts, splits, labelers),
        rankings=ranking_records(prompts, splits, comps, labelers),
        prompts=prompt_records(prompts, splits),
        batch_id=1,
    )
