"""Reward-model and DPO batches grouped by padded length; DPO's per-epoch evaluation can be switched off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.batching import group_lengths, pretokenize
from training.config import DPOConfig, RewardConfig, RuntimeConfig
from training.data import ComparisonGroup, group_comparisons, read_batch
from training.models import load_tokenizer

CPU = RuntimeConfig(device="cpu", threads=1)


def test_group_length_is_its_longest_sequence(micro_base: Path) -> None:
    tok = load_tokenizer(micro_base)
    completions = ["3", "It is three, as one plus two makes three.", "three"]
    g = ComparisonGroup("What is 1 plus 2?", completions, [(0, 1)])
    cache = pretokenize(tok, ((g.prompt, c) for c in g.completions), 128)
    lengths = [len(cache[(repr(g.prompt), c, 128)][0]) for c in g.completions]
    assert group_lengths(cache, tok, [g], 128) == [max(lengths)] and max(lengths) > min(lengths)


def test_reward_model_batches_are_length_grouped(
    micro_base: Path, world_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import reward

    seen: dict[str, Any] = {}
    real = reward.train_loop

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen["lengths"], seen["examples"] = kwargs.get("lengths"), args[2]
        return real(*args, **kwargs)

    monkeypatch.setattr(reward, "train_loop", spy)
    reward.run_reward(RewardConfig(batch_size=8, runtime=CPU), world_batch, micro_base, tmp_path / "rm")
    tok = load_tokenizer(micro_base)
    want = group_lengths({}, tok, seen["examples"], 128)
    assert seen["lengths"] == want and len(set(want)) > 1


def test_dpo_without_per_epoch_evaluation(micro_base: Path, world_batch: Path, tmp_path: Path) -> None:
    from training.dpo import run_dpo

    cfg = DPOConfig(epochs=2, lr=1e-3, batch_size=16, warmup_steps=0, eval_every_epoch=False, runtime=CPU)
    out = run_dpo(cfg, world_batch, micro_base, tmp_path / "dpo")
    m = json.loads((out / "manifest.json").read_text())["metrics"]
    assert [set(h) for h in m["history"]] == [{"epoch"}, {"epoch"}]  # no monitor pass after the epochs
    batch = read_batch(world_batch)
    assert group_comparisons(batch.split("rankings", "test"), [])
    assert "test_reward_accuracy" in m  # the final held-out metrics stay
