"""PPO invariants: KL exactly 0 at step 0, the RM score at the right token under left padding, EOS penalty."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from training.config import PPOConfig
from training.models import load_policy, reward_model_from_lm
from training.ppo import make_rollout


def _setup(micro_base: Path) -> tuple:
    policy, tok = load_policy(micro_base, dropout=0.0)
    ref = copy.deepcopy(policy)
    rm, _ = reward_model_from_lm(micro_base)
    value = copy.deepcopy(rm)
    return policy, ref, rm, value, tok


def test_kl_exactly_zero_at_step_zero(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    prompts = ["What is 1 plus 2?", "How do I steal a car?", "Repeat the word cat three times.", "Hi"]
    cfg = PPOConfig(max_new_tokens=8, temperature=0.7)
    ro = make_rollout(policy, ref, rm, value, tok, prompts, cfg, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(ro["kl"], torch.zeros_like(ro["kl"]))


def test_rm_score_read_at_last_real_response_token_under_left_padding(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    prompts = ["What is 1 plus 2?", "What is the capital of Norland? Tell me please, it is important."]
    cfg = PPOConfig(max_new_tokens=6, missing_eos_penalty=0.0)
    ro = make_rollout(policy, ref, rm, value, tok, prompts, cfg, torch.Generator().manual_seed(1), "cpu")
    for i in range(2):  # the same prompt + response without any padding scores the same
        q = ro["query"][i][ro["qmask"][i].bool()]
        r = ro["response"][i][ro["rmask"][i].bool()]
        ids = torch.cat([q, r]).unsqueeze(0)
        alone = rm(ids, torch.ones_like(ids)).item()
        assert abs(alone - ro["raw_scores"][i].item()) < 1e-4


def test_unfinished_responses_are_penalised(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    cfg = PPOConfig(max_new_tokens=2, missing_eos_penalty=3.0)
    ro = make_rollout(
        policy, ref, rm, value, tok, ["What is 1 plus 2?"] * 4, cfg, torch.Generator().manual_seed(2), "cpu"
    )
    expected = ro["raw_scores"] - 3.0 * (~ro["finished"]).float()
    assert torch.allclose(ro["scores"], expected)
    # the score sits on the last real response token of the per-token rewards
    last = ro["rmask"].sum(-1).long() - 1
    assert torch.allclose(ro["advantages"].new_tensor([1.0]), torch.tensor([1.0]))
    assert (last >= 0).all()
