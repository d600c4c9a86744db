"""Pairs from labelers' edits: grouped apart, weighted or left out by the RM and DPO stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.batching import pair_weights
from training.config import DPOConfig, RewardConfig, RuntimeConfig
from training.data import group_comparisons, is_edit_pair, write_batch
from training.losses import dpo_group_loss, group_mean, rm_group_loss

CPU = RuntimeConfig(device="cpu")


def _pair(prompt: str, chosen: str, rejected: str, edit: bool) -> dict:
    prov = {"ranking_id": 1, "from_edit": edit, "edit_id": 7 if edit else None}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "split": "train", "provenance": prov}


def test_edit_pairs_form_their_own_weighted_group() -> None:
    rows = [_pair("p", "a", "b", False), _pair("p", "a+", "a", True), _pair("q", "x+", "x", True)]
    assert [is_edit_pair(r) for r in rows] == [False, True, True]
    groups = group_comparisons([], rows, edit_weight=0.25)
    weights = sorted((g.prompt, g.completions[g.pairs[0][0]], g.weight) for g in groups)
    assert weights == [("p", "a", 1.0), ("p", "a+", 0.25), ("q", "x+", 0.25)]
    plain = group_comparisons([], rows)
    assert len(plain) == 3 and all(g.weight == 1.0 for g in plain)
    assert pair_weights(plain) is None
    kept = group_comparisons([], rows, edit_weight=0)
    assert [(g.prompt, g.completions) for g in kept] == [("p", ["a", "b"])]
    with pytest.raises(ValueError, match="edit_weight"):
        group_comparisons([], rows, edit_weight=-1)


def test_pair_weights_follow_the_batch_pair_order() -> None:
    groups = group_comparisons(
        [{"prompt": "r", "completions": ["1", "2", "3"], "ranks": [1, 2, 3]}],
        [_pair("p", "a+", "a", True)],
        edit_weight=0.5,
    )
    w = pair_weights(groups)
    assert w is not None and w.tolist() == [1.0, 1.0, 1.0, 0.5]


def test_weighted_rm_loss_scales_each_pair() -> None:
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2])
    group, winners, losers = torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([1, 3])
    plain, _ = rm_group_loss(scores, group, winners, losers)
    ones, _ = rm_group_loss(scores, group, winners, losers, torch.tensor([1.0, 1.0]))
    assert ones.item() == pytest.approx(plain.item())
    weighted, _ = rm_group_loss(scores, group, winners, losers, torch.tensor([1.0, 0.5]))
    l0 = -torch.nn.functional.logsigmoid(torch.tensor(1.0)).item()
    l1 = -torch.nn.functional.logsigmoid(torch.tensor(0.3)).item()
    assert weighted.item() == pytest.approx((l0 + 0.5 * l1) / 2)
    zero, _ = rm_group_loss(scores, group, winners, losers, torch.tensor([1.0, 0.0]))
    assert zero.item() == pytest.approx(l0 / 2)


def test_weighted_group_mean_and_dpo_loss() -> None:
    values, group = torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0, 0, 1])
    assert group_mean(values, group, torch.tensor([1.0, 1.0, 0.5])).item() == pytest.approx((2.0 + 5.0) / 2)
    logps, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.5])
    args = (torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    full, _, _ = dpo_group_loss(logps, ref, *args, beta=1.0)
    half, _, _ = dpo_group_loss(logps, ref, *args, beta=1.0, weights=torch.tensor([0.5]))
    assert half.item() == pytest.approx(full.item() / 2)


def test_configs_refuse_a_negative_edit_weight() -> None:
    assert RewardConfig().edit_pair_weight == DPOConfig().edit_pair_weight == 1.0
    for cls in (RewardConfig, DPOConfig):
        with pytest.raises(ValueError, match="edit_pair_weight"):
            cls(edit_pair_weight=-0.5)


@pytest.fixture(scope="module")
def edit_batch(world_batch: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 train rankings of the world batch plus one edit pair each (the top completion, fixed)."""
    from training.data import read_batch

    rankings = read_batch(world_batch).split("rankings", "train")[:12]
    edits = []
    for r in rankings:
        best = r["completions"][r["ranks"].index(min(r["ranks"]))]
        edits.append(_pair(r["prompt"], best + " (fixed)", best, True))
    return write_batch(tmp_path_factory.mktemp("edits") / "b", rankings=rankings, pairwise=edits, batch_id=2)


def _metrics(out: Path) -> dict:
    return dict(json.loads((out / "manifest.json").read_text())["metrics"])


def test_reward_stage_weights_or_leaves_out_edit_pairs(
    micro_base: Path, edit_batch: Path, tmp_path: Path
) -> None:
    from training.reward import run_reward

    runs = {}
    for w in (1.0, 0.5, 0.0):
        cfg = RewardConfig(batch_size=8, epochs=1, edit_pair_weight=w, early_stopping=False, max_length=64,
                           center_on_demonstrations=False, runtime=CPU)
        runs[w] = _metrics(run_reward(cfg, edit_batch, micro_base, tmp_path / f"rm{w}"))
    n_edits = sum(1 for line in (edit_batch / "pairwise.jsonl").read_text().splitlines() if line)
    assert runs[1.0]["train_pairs"] == runs[0.0]["train_pairs"] + n_edits == runs[0.5]["train_pairs"]
    assert runs[1.0]["train_groups"] == runs[0.0]["train_groups"] + n_edits
    # Same data, same seed: only the edit pairs' weight differs, so the losses do.
    assert runs[0.5]["train_loss"] != runs[1.0]["train_loss"]


def test_dpo_stage_leaves_out_edit_pairs_at_weight_zero(
    micro_base: Path, edit_batch: Path, tmp_path: Path
) -> None:
    from training.dpo import run_dpo

    cfg = {"batch_size": 8, "epochs": 1, "warmup_steps": 0, "max_length": 64, "runtime": CPU}
    with_edits = _metrics(run_dpo(DPOConfig(**cfg), edit_batch, micro_base, tmp_path / "d1"))
    cfg0 = DPOConfig(edit_pair_weight=0.0, **cfg)
    without = _metrics(run_dpo(cfg0, edit_batch, micro_base, tmp_path / "d0"))
    n_edits = sum(1 for line in (edit_batch / "pairwise.jsonl").read_text().splitlines() if line)
    assert with_edits["train_pairs"] == without["train_pairs"] + n_edits


def test_pairs_expanded_from_a_grouped_ranking_are_not_counted_twice() -> None:
    # The app's exports write each ranking to rankings.jsonl and its expanded pairs to
    # pairwise.jsonl; trained on both, every comparison would count twice.
    ranking = {"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 2, 3],
               "provenance": {"ranking_id": 7}}
    expanded = [
        {"prompt": "p", "chosen": x, "rejected": y, "provenance": {"ranking_id": 7, "from_edit": False}}
        for x, y in (("a", "b"), ("a", "c"), ("b", "c"))
    ]
    edit = {"prompt": "p", "chosen": "a!", "rejected": "a",
            "provenance": {"ranking_id": 7, "from_edit": True}}
    other = {"prompt": "q", "chosen": "x", "rejected": "y", "provenance": {"ranking_id": 8}}
    groups = group_comparisons([ranking], [*expanded, edit, other])
    assert sum(len(g.pairs) for g in groups) == 3 + 1 + 1
    shape = sorted((g.prompt, len(g.pairs), g.weight) for g in groups)
    assert shape == [("p", 1, 1.0), ("p", 3, 1.0), ("q", 1, 1.0)]
    # Pairs alone (no rankings file, e.g. a hand-made batch) are all kept.
    assert sum(len(g.pairs) for g in group_comparisons([], expanded)) == 3
