"""Inputs longer than a model's context window: cut to fit (training, sampling, PPO's prompts), or
refused in one line when nothing fits. They used to index past the position embeddings (IndexError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.checkpoints import read_manifest
from training.config import PPOConfig, RuntimeConfig, SamplingParams, SFTConfig
from training.data import write_batch
from training.errors import InputError
from training.generate import Sampler
from training.models import context_window, fit_to_context, load_policy, reward_model_from_lm

CPU = RuntimeConfig(device="cpu", threads=1)


def test_the_window_is_read_from_the_model_or_the_model_it_wraps(micro_base: Path) -> None:
    model = load_policy(micro_base)[0]
    window = context_window(model)
    assert window == model.config.n_positions
    assert context_window(reward_model_from_lm(micro_base)[0]) == window  # the RM wrapper's .model
    assert context_window(object()) is None
    said: list[str] = []
    assert fit_to_context(window - 1, model, said.append) == window - 1 and said == []
    assert fit_to_context(window + 10, model, said.append, "sft: max_length") == window
    assert said == [
        f"sft: max_length {window + 10} is longer than the model's context window ({window}); using {window}"
    ]


def test_long_demonstrations_train_and_long_prompts_sample(micro_base: Path, tmp_path: Path) -> None:
    from training.sft import run_sft

    window = context_window(load_policy(micro_base)[0])
    assert window is not None
    long = " ".join(["word"] * 2 * window)
    rows = [{"prompt": long, "completion": long}, {"prompt": "Say hi.", "completion": long}] * 2
    batch = write_batch(tmp_path / "b", sft=rows)
    cfg = SFTConfig(epochs=1, batch_size=2, max_length=4 * window, runtime=CPU)
    out = run_sft(cfg, batch, micro_base, tmp_path / "sft")
    assert read_manifest(out)["config"]["sft"]["max_length"] == window  # what was used is recorded
    assert cfg.max_length == 4 * window  # the caller's config is not changed
    sampler = Sampler(out, device="cpu")
    assert len(sampler.sample([long], 2, SamplingParams(max_new_tokens=8, seed=0))[0]) == 2
    with pytest.raises(InputError, match=rf"max_new_tokens {window} leaves no room .*\({window} tokens\)"):
        sampler.sample(["Say hi."], 1, SamplingParams(max_new_tokens=window))


def test_ppo_prompts_are_shortened_to_leave_room_for_the_response(micro_base: Path) -> None:
    from training.callbacks import Callbacks
    from training.ppo import _fit_prompt_length

    policy = load_policy(micro_base)[0]
    window = context_window(policy)
    assert window is not None
    cfg = PPOConfig(max_prompt_length=window, max_new_tokens=16)
    fitted = _fit_prompt_length(cfg, policy, Callbacks([]))
    assert fitted.max_prompt_length == window - 16 and cfg.max_prompt_length == window  # a copy
    assert _fit_prompt_length(fitted, policy, Callbacks([])) is fitted  # already fits: unchanged
    with pytest.raises(InputError, match="leaves no room for a prompt"):
        _fit_prompt_length(PPOConfig(max_new_tokens=window), policy, Callbacks([]))


def test_evaluation_scores_whole_sequences_with_the_reward_model(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    """evaluate's RM scores see the prompt as the sampler did (they were cut at 128 tokens)."""
    from training.batching import rm_scores
    from training.config import RewardConfig
    from training.evaluate import evaluate_policy
    from training.models import load_reward_model_and_tokenizer
    from training.reward import run_reward

    rm_dir = run_reward(RewardConfig(batch_size=8, runtime=CPU), world_batch, micro_base, tmp_path / "rm")
    rm, tok = load_reward_model_and_tokenizer(rm_dir)
    prompts = [" ".join(["word"] * 150) + " What is 1 plus 2?", "Hi"]
    assert 128 < len(tok(prompts[0])["input_ids"]) < 200  # longer than the old cut, within the budget
    params = SamplingParams(max_new_tokens=8, seed=0)
    res = evaluate_policy(micro_base, prompts, reward_model_dir=rm_dir, params=params)
    whole = rm_scores(rm, tok, prompts, res["completions"], 1000).tolist()
    assert res["rm_scores"] == pytest.approx(whole, abs=1e-5)
    cut = rm_scores(rm, tok, prompts, res["completions"], 128).tolist()
    assert cut[0] != pytest.approx(whole[0], abs=1e-5)  # the old cut: the test can tell
