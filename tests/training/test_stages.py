"""Each stage end to end on a tiny world batch: directories, manifests, loading, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.callbacks import StopTraining
from training.checkpoints import verify_model_dir
from training.config import PPOConfig, RewardConfig, RuntimeConfig, SFTConfig

CPU = RuntimeConfig(device="cpu")


@pytest.fixture(scope="module")
def stages(micro_base: Path, world_batch: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from training.ppo import run_ppo
    from training.reward import run_reward
    from training.sft import run_sft
    from training.world.hooks import PPO_HOOKS

    out = tmp_path_factory.mktemp("stages")
    sft = run_sft(SFTConfig(epochs=2, batch_size=16, runtime=CPU), world_batch, micro_base, out / "sft")
    rm = run_reward(RewardConfig(batch_size=8, runtime=CPU), world_batch, sft, out / "rm")
    ppo = run_ppo(
        PPOConfig(
            total_episodes=16,
            rollout_batch_size=8,
            minibatch_size=4,
            max_new_tokens=6,
            ptx_coef=1.0,
            ptx_batch_size=2,
            runtime=CPU,
        ),
        world_batch,
        sft,
        rm,
        out / "ppo",
        **PPO_HOOKS,  # the world's oracle score in the history, its corpus as PPO-ptx text
    )
    return {"sft": sft, "rm": rm, "ppo": ppo, "root": out}


def test_model_dirs_are_manifested_and_loadable(stages: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    for name, kind in [("sft", "policy"), ("rm", "reward"), ("ppo", "policy")]:
        m = json.loads((stages[name] / "manifest.json").read_text())
        assert m["kind"] == kind and m["export_batch"] == 1 and m["parent"]
        assert any(f.endswith(".safetensors") for f in m["files"])
        verify_model_dir(stages[name])
        tok = AutoTokenizer.from_pretrained(stages[name])
        assert tok.pad_token_id != tok.eos_token_id
    AutoModelForCausalLM.from_pretrained(stages["ppo"])
    AutoModelForSequenceClassification.from_pretrained(stages["rm"])
    assert not list(stages["root"].glob(".*tmp*"))


def test_reward_model_centred_on_demonstrations(stages: dict[str, Path], world_batch: Path) -> None:
    from training.batching import rm_scores
    from training.data import read_batch
    from training.models import load_reward_model_and_tokenizer

    rm, tok = load_reward_model_and_tokenizer(stages["rm"])
    demos = read_batch(world_batch).split("sft", "train")
    mean = rm_scores(rm, tok, [d["prompt"] for d in demos], [d["completion"] for d in demos]).mean().item()
    assert abs(mean) < 1e-3
    metrics = json.loads((stages["rm"] / "manifest.json").read_text())["metrics"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["train_pairs"] > 0


def test_ppo_history_starts_at_zero_kl(stages: dict[str, Path]) -> None:
    hist = json.loads((stages["ppo"] / "manifest.json").read_text())["metrics"]["history"]
    assert len(hist) == 2 and hist[0]["kl"] == 0.0 and "ptx_loss" in hist[0] and "oracle_score" in hist[0]


def test_sft_selects_by_rm_score_when_given(
    stages: dict[str, Path], micro_base: Path, world_batch: Path
) -> None:
    from training.sft import run_sft

    out = run_sft(
        SFTConfig(epochs=2, batch_size=16, rm_eval_prompts=8, rm_eval_max_new_tokens=4, runtime=CPU),
        world_batch,
        micro_base,
        stages["root"] / "sft-rm",
        reward_model_dir=stages["rm"],
    )
    m = json.loads((out / "manifest.json").read_text())["metrics"]
    assert m["selected_by"] == "rm" and all("valid_rm_score" in h for h in m["history"])


def test_should_stop_cancels(micro_base: Path, world_batch: Path, tmp_path: Path) -> None:
    from training.sft import run_sft

    class Stop:
        def should_stop(self) -> bool:
            return True

    with pytest.raises(StopTraining):
        run_sft(SFTConfig(epochs=1, runtime=CPU), world_batch, micro_base, tmp_path / "x", callbacks=[Stop()])
    assert not (tmp_path / "x").exists()


def test_cli_runs_stages_from_export_files(micro_base: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "training", *args], capture_output=True, text=True, check=False
        )
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    cli("world-batch", "--out", str(tmp_path / "b"), "--n", "40", "--k", "4")
    sft = (
        cli(
            "sft",
            "--batch",
            str(tmp_path / "b"),
            "--base",
            str(micro_base),
            "--out",
            str(tmp_path / "sft"),
            "--device",
            "cpu",
            "--set",
            "epochs=1",
            "--set",
            "batch_size=16",
        )
        .strip()
        .splitlines()[-1]
    )
    rm = (
        cli(
            "reward",
            "--batch",
            str(tmp_path / "b"),
            "--base",
            sft,
            "--out",
            str(tmp_path / "rm"),
            "--device",
            "cpu",
            "--set",
            "batch_size=8",
        )
        .strip()
        .splitlines()[-1]
    )
    cli(
        "ppo",
        "--batch",
        str(tmp_path / "b"),
        "--policy",
        sft,
        "--reward-model",
        rm,
        "--out",
        str(tmp_path / "ppo"),
        "--device",
        "cpu",
        "--set",
        "total_episodes=8",
        "--set",
        "rollout_batch_size=8",
        "--set",
        "minibatch_size=4",
        "--set",
        "max_new_tokens=4",
    )
    out = cli(
        "sample",
        "--model",
        str(tmp_path / "ppo"),
        "--prompt",
        "What is 2 plus 2?",
        "-k",
        "2",
        "--max-new-tokens",
        "4",
        "--seed",
        "0",
    )
    row = json.loads(out.strip().splitlines()[-1])
    assert len(row["completions"]) == 2 and row["sampling"]["max_new_tokens"] == 4
    assert all(isinstance(c, str) for c in row["completions"]) and len(row["token_ids"]) == 2
