"""SFT, RM and PPO in 2 processes (torchrun, gloo on the CPU) against the 1-process runs.

Tolerance (stated in the README): the per-step training loss of the 2-process run matches the
1-process run at the same global batch within 1e-4 absolute at every step (the same gradients up to
the order of floating-point sums in the all-reduce).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from training.config import PPOConfig, RewardConfig, RuntimeConfig, SFTConfig
from training.launch import launch_command, run_in_processes
from training.world.hooks import PPO_HOOKS

pytestmark = pytest.mark.slow
TOL = 1e-4
CPU = RuntimeConfig(device="cpu")


def _log_ids(log_dir: Path, stage: str, rank: int) -> list[list[int]]:
    lines = (log_dir / f"{stage}-rank{rank}.jsonl").read_text().splitlines()
    return [json.loads(line)["ids"] for line in lines]


def _only_dir(out: Path) -> None:
    """The output's parent holds exactly that one directory (no second copy, no temp dirs left)."""
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert (out / "manifest.json").exists()


def _losses(out: Path) -> list[float]:
    return json.loads((out / "manifest.json").read_text())["metrics"]["train_loss"]


class Recorder:
    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        self.steps.append((stage, step))


@pytest.fixture(scope="module")
def shard_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shards")


@pytest.fixture(scope="module")
def two_proc(
    micro_base: Path, world_batch: Path, tmp_path_factory: pytest.TempPathFactory, shard_log: Path
) -> dict[str, Any]:
    """SFT, RM and PPO run with 2 processes through run_in_processes (the worker's path)."""
    root = tmp_path_factory.mktemp("two")
    os.environ["RLHF_SHARD_LOG"] = str(shard_log)
    try:
        rec = Recorder()
        sft = run_in_processes(
            "training.sft:run_sft",
            SFTConfig(epochs=2, batch_size=16, dropout=0.0, select_by="last", runtime=CPU),
            {"batch_dir": world_batch, "base_model_dir": micro_base, "out_dir": root / "sft" / "out"},
            2, [rec], poll_s=0.2,
        )  # fmt: skip
        rm = run_in_processes(
            "training.reward:run_reward", RewardConfig(batch_size=8, runtime=CPU),
            {"batch_dir": world_batch, "base_model_dir": sft, "out_dir": root / "rm" / "out"}, 2,
        )  # fmt: skip
        ppo_cfg = PPOConfig(
            total_episodes=8, rollout_batch_size=4, minibatch_size=4, micro_batch_size=1, max_new_tokens=4,
            ptx_coef=1.0, ptx_batch_size=2, gradient_checkpointing=True, runtime=CPU,
        )  # fmt: skip
        ppo = run_in_processes(
            "training.ppo:run_ppo", ppo_cfg,
            {"batch_dir": world_batch, "policy_dir": sft, "reward_model_dir": rm,
             "out_dir": root / "ppo" / "out", **PPO_HOOKS}, 2,
        )  # fmt: skip
    finally:
        del os.environ["RLHF_SHARD_LOG"]
    return {"sft": sft, "rm": rm, "ppo": ppo, "progress": rec.steps}


def test_launch_command_shapes() -> None:
    one = launch_command(["-m", "training", "sft", "--out", "x"], 1, python="py")
    assert one == ["py", "-m", "training", "sft", "--out", "x"]
    two = launch_command(["-m", "training.launch", "s.json", "p.jsonl"], 2, python="py")
    assert two[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert two[5:] == ["-m", "training.launch", "s.json", "p.jsonl"]
    acc = launch_command(["-m", "training", "ppo"], 4, accelerate_config="ds.yaml", python="py")
    assert acc[2] == "accelerate.commands.launch" and "ds.yaml" in acc and "4" in acc


def test_ranks_train_on_different_rows(two_proc: dict[str, Any], shard_log: Path, world_batch: Path) -> None:
    from training.data import read_batch

    n_train = len(read_batch(world_batch).split("sft", "train"))
    for stage in ("sft", "reward"):
        r0, r1 = _log_ids(shard_log, stage, 0), _log_ids(shard_log, stage, 1)
        assert len(r0) == len(r1) > 0
        for a, b in zip(r0, r1, strict=True):
            assert not set(a) & set(b)  # disjoint within each step
    steps = math.ceil(n_train / 16)
    sft_epoch = [
        i
        for step in _log_ids(shard_log, "sft", 0)[:steps] + _log_ids(shard_log, "sft", 1)[:steps]
        for i in step
    ]
    assert sorted(sft_epoch) == list(range(n_train))  # one epoch covers every row once, over both ranks
    assert _log_ids(shard_log, "ppo", 0) != _log_ids(shard_log, "ppo", 1)


def test_one_directory_written_and_it_loads(two_proc: dict[str, Any]) -> None:
    from training.generate import Sampler
    from training.models import load_reward_model

    for name in ("sft", "rm", "ppo"):
        _only_dir(two_proc[name])
    load_reward_model(two_proc["rm"])
    assert Sampler(two_proc["ppo"], device="cpu").sample(["What is 1 plus 2?"], 1)[0][0].params
    m = json.loads((two_proc["ppo"] / "manifest.json").read_text())["metrics"]
    assert len(m["history"]) == 2 and "ptx_loss" in m["history"][0] and m["history"][0]["kl"] == 0.0
    assert ("sft", 6) in two_proc["progress"]  # progress relayed from the processes to the callback


def test_two_process_loss_curves_match_one_process(
    two_proc: dict[str, Any], micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from training.reward import run_reward
    from training.sft import run_sft

    sft1 = run_sft(
        SFTConfig(epochs=2, batch_size=16, dropout=0.0, select_by="last", runtime=CPU),
        world_batch, micro_base, tmp_path / "sft1",
    )  # fmt: skip
    rm1 = run_reward(RewardConfig(batch_size=8, runtime=CPU), world_batch, two_proc["sft"], tmp_path / "rm1")
    for name, one, two in (("sft", sft1, two_proc["sft"]), ("reward", rm1, two_proc["rm"])):
        a, b = _losses(one), _losses(two)
        assert len(a) == len(b) > 1
        diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
        print(f"{name}: {len(a)} steps, max |loss(2 processes) - loss(1 process)| = {diff:.2e}")
        assert diff < TOL, (a, b)


def test_cli_runs_under_torchrun(micro_base: Path, world_batch: Path, tmp_path: Path) -> None:
    """The plain CLI under torchrun: what a user types (`--set` overrides, no config file)."""
    out = tmp_path / "o" / "sft"
    # --preset paper: the library's defaults (the quick preset's floor of steps would add epochs)
    args = ["--batch", str(world_batch), "--base", str(micro_base), "--out", str(out), "--device", "cpu",
            "--preset", "paper",
            "--set", "epochs=1", "--set", "batch_size=16", "--set", "grad_accum_steps=2"]  # fmt: skip
    r = subprocess.run(
        launch_command(["-m", "training", "sft", *args], 2),
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    _only_dir(out)
    m = json.loads((out / "manifest.json").read_text())["metrics"]
    assert m["processes"] == 2 and len(m["train_loss"]) == m["train_examples"] // 16 + 1


def test_rloo_ppo_in_two_processes_leaves_the_value_model_out(
    two_proc: dict[str, Any], world_batch: Path, tmp_path: Path
) -> None:
    """The quick preset's estimator over DDP: each rank rolls out whole groups, no value loss."""
    cfg = PPOConfig(
        total_episodes=16, rollout_batch_size=8, minibatch_size=4, micro_batch_size=2, max_new_tokens=4,
        advantage_estimator="rloo", n_samples_per_prompt=4, whiten_advantages=False, runtime=CPU,
    )  # fmt: skip
    out = run_in_processes(
        "training.ppo:run_ppo", cfg,
        {"batch_dir": world_batch, "policy_dir": two_proc["sft"], "reward_model_dir": two_proc["rm"],
         "out_dir": tmp_path / "ppo"}, 2,
    )  # fmt: skip
    m = json.loads((Path(out) / "manifest.json").read_text())["metrics"]
    assert m["episodes"] == 16 and len(m["history"]) == 2
    assert all("vf_loss" not in h and math.isfinite(h["pg_loss"]) for h in m["history"])
