"""DPO end to end on a tiny world batch: the reference, the pairs, the metrics, the directory, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from training.checkpoints import verify_model_dir
from training.config import DPOConfig, RuntimeConfig
from training.data import ComparisonGroup, group_comparisons, read_batch

CPU = RuntimeConfig(device="cpu", threads=1)


class Record:
    """Keeps every progress call."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        self.steps.append({"stage": stage, "step": step, "total": total, **metrics})


def test_pairs_come_once_from_each_ranking_without_ties(micro_base: Path) -> None:
    from training.dpo import as_pairs, pair_batch
    from training.models import load_tokenizer

    groups = group_comparisons(
        [{"prompt": "p", "completions": ["a", "b", "c", "d"], "ranks": [1, 2, 2, 3]}],
        [{"prompt": "q", "chosen": "x", "rejected": "y"}],
    )
    # ranks 1, 2, 2, 3: C(4,2) = 6 pairs, one tie (b, c) dropped
    assert [g.pairs for g in groups] == [[(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)], [(0, 1)]]
    pairs, refs = as_pairs(groups, [[-1.0, -2.0, -3.0, -4.0], [-5.0, -6.0]])
    assert (
        len(pairs) == 6 and pairs[3] == ComparisonGroup("p", ["b", "d"], [(0, 1)]) and refs[3] == [-2.0, -4.0]
    )
    tok = load_tokenizer(micro_base)
    b = pair_batch(tok, groups, 64)
    assert b["input_ids"].shape[0] == 6  # each completion once in the grouped variant
    assert b["winners"].tolist() == [0, 0, 0, 1, 2, 4] and b["losers"].tolist() == [1, 2, 3, 3, 3, 5]
    assert b["group"].tolist() == [0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("grouped", [True, False])
def test_dpo_starts_at_log2_and_separates_the_pairs(
    micro_base: Path, world_batch: Path, tmp_path: Path, grouped: bool
) -> None:
    from training.dpo import run_dpo

    torch.set_num_threads(1)
    rec = Record()
    cfg = DPOConfig(epochs=3, lr=1e-3, batch_size=8, warmup_steps=0, beta=0.5, grouped=grouped, runtime=CPU)
    out = run_dpo(cfg, world_batch, micro_base, tmp_path / "dpo", callbacks=[rec], run=7, method="dpo")
    first, last = rec.steps[0], rec.steps[-1]
    # policy == reference before the first update: every margin is 0, the loss is -log sigmoid(0)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-4) and first["reward_accuracy"] == 0.0
    assert last["stage"] == "dpo" and last["step"] == last["total"]
    assert {"chosen_logp", "rejected_logp", "chosen_reward", "rejected_reward", "lr"} <= set(last)
    manifest = json.loads((out / "manifest.json").read_text())
    m = manifest["metrics"]
    assert (
        manifest["kind"] == "policy"
        and manifest["run"] == 7
        and manifest["method"] == "dpo"  # on disk, not only on the registered version
        and manifest["config"]["dpo"]["grouped"] is grouped
    )
    batch = read_batch(world_batch)
    train = group_comparisons(batch.split("rankings", "train"), batch.split("pairwise", "train"))
    assert m["train_pairs"] == sum(len(g.pairs) for g in train) and len(m["history"]) == 3
    margins = [[s["reward_margin"] for s in rec.steps if s["epoch"] == e] for e in (0, 2)]
    assert sum(margins[1]) / len(margins[1]) > sum(margins[0]) / len(margins[0])  # it learns the train pairs
    assert {"reward_accuracy", "reward_margin"} <= set(m["history"][-1])  # monitored after every epoch
    # the epoch kept is the best on the valid pairs (the later one on a tie), and the manifest's valid
    # figures are those of the weights written, not of the last epoch's
    acc = [h["reward_accuracy"] for h in m["history"]]
    assert m["selected_by"] == "valid_reward_accuracy" and m["monitored_on"] == "valid"
    assert m["selected_epoch"] == max(range(3), key=lambda e: (acc[e], e))
    assert m["valid_reward_accuracy"] == pytest.approx(acc[m["selected_epoch"]], abs=1e-6)
    assert 0.0 <= m["test_reward_accuracy"] <= 1.0 and m["test_pairs"] > 0
    verify_model_dir(out)


def test_dpo_writes_the_best_epoch_on_valid_pairs(
    micro_base: Path, world_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When an earlier epoch was better on the held-out pairs, its weights are written, not the last's."""
    import training.dpo as dpo
    from training.models import load_policy

    real, snapshots = dpo.held_out_metrics, []
    fake_accuracy = iter([0.9, 0.5, 0.4])  # the three epochs' accuracies; later calls are the real ones

    def held_out(model: Any, *args: Any) -> dict[str, float]:
        scored = real(model, *args)
        acc = next(fake_accuracy, None)
        if acc is None:
            return scored
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {**scored, "reward_accuracy": acc}

    monkeypatch.setattr(dpo, "held_out_metrics", held_out)
    cfg = DPOConfig(epochs=3, lr=1e-3, batch_size=8, warmup_steps=0, runtime=CPU)
    m = json.loads((dpo.run_dpo(cfg, world_batch, micro_base, tmp_path / "d") / "manifest.json").read_text())
    assert m["metrics"]["selected_epoch"] == 0 and len(snapshots) == 3
    written = load_policy(tmp_path / "d")[0].state_dict()
    same = [all(torch.equal(written[k], snap[k]) for k in snap if k in written) for snap in snapshots]
    assert same == [True, False, False]


def test_ipo_and_conservative_dpo_run(micro_base: Path, world_batch: Path, tmp_path: Path) -> None:
    from training.dpo import run_dpo

    rec = Record()
    for name, extra in (("ipo", {"loss_type": "ipo"}), ("cdpo", {"label_smoothing": 0.2})):
        cfg = DPOConfig(epochs=1, lr=1e-3, batch_size=16, warmup_steps=0, runtime=CPU, **extra)  # type: ignore[arg-type]
        run_dpo(cfg, world_batch, micro_base, tmp_path / name, callbacks=[rec])
    ipo_first = next(s for s in rec.steps if s["step"] == 1)
    assert ipo_first["loss"] == pytest.approx((1 / (2 * 0.1)) ** 2, rel=1e-4)  # (0 - 1/(2 beta))^2 = 25


def test_rpo_adds_the_chosen_completions_nll(micro_base: Path, world_batch: Path, tmp_path: Path) -> None:
    from training.dpo import run_dpo

    torch.set_num_threads(1)
    rec = Record()
    cfg = DPOConfig(epochs=3, lr=1e-3, batch_size=8, warmup_steps=0, rpo_alpha=0.5, runtime=CPU)
    run_dpo(cfg, world_batch, micro_base, tmp_path / "rpo", callbacks=[rec])
    first = rec.steps[0]
    # policy == reference at the first step: DPO's part is log 2, the rest is alpha x the chosen NLL
    assert first["loss"] == pytest.approx(math.log(2) + 0.5 * first["chosen_nll"], abs=1e-4)
    nll = [[s["chosen_nll"] for s in rec.steps if s["epoch"] == e] for e in (0, 2)]
    assert sum(nll[1]) / len(nll[1]) < sum(nll[0]) / len(nll[0])  # the chosen answers grow likelier
    with pytest.raises(ValueError, match="rpo_alpha must be 0 or more"):
        DPOConfig(rpo_alpha=-1.0)


def test_cli_runs_dpo(micro_base: Path, world_batch: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "dpo",
            "--batch",
            str(world_batch),
            "--base",
            str(micro_base),
            "--out",
            str(tmp_path / "dpo"),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--set",
            "epochs=1",
            "--set",
            "batch_size=16",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "dpo")
    assert json.loads((tmp_path / "dpo" / "manifest.json").read_text())["config"]["dpo"]["epochs"] == 1
    # the DPO policy as a reward model: reference and beta from its manifest, centred on the batch
    rm = tmp_path / "rm"
    args = ["implicit-reward", "--dpo", str(tmp_path / "dpo"), "--batch", str(world_batch), "--out", str(rm)]
    r = subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    config = json.loads((rm / "implicit_reward.json").read_text())
    assert config["beta"] == 0.1 and config["bias"] != 0.0
    # a model with no parent can not say which reference DPO started from; a batch is no model at all
    for dpo, message in (
        (micro_base, "no parent in its manifest"),
        (world_batch, "is not a model directory"),
    ):
        args = ["implicit-reward", "--dpo", str(dpo), "--out", str(tmp_path / "x")]
        r = subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True)
        assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
