"""The critic starts where the reward model stands: its values include the reward model's bias."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from training.config import PPOConfig
from training.losses import gather_last
from training.models import load_policy, reward_model_from_lm
from training.ppo import make_rollout

BIAS = -2.565  # the bias of the recorded run in issue 10


def test_token_values_include_the_bias(micro_base: Path) -> None:
    rm, tok = reward_model_from_lm(micro_base)
    rm.bias = BIAS
    ids = torch.tensor([[tok.pad_token_id, 5, 6, 7], [8, 9, 10, 11]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    per_token = rm(ids, mask, per_token=True)  # [B, T]
    assert torch.allclose(gather_last(per_token, mask), rm(ids, mask), atol=1e-6)


def test_value_at_last_response_token_equals_rm_score_at_step_zero(micro_base: Path) -> None:
    policy, tok = load_policy(micro_base, dropout=0.0)
    rm, _ = reward_model_from_lm(micro_base)
    rm.bias = BIAS
    with torch.no_grad():  # a head that outputs 0 everywhere: every score is the bias alone
        rm.model.score.weight.zero_()
    value = copy.deepcopy(rm)
    cfg = PPOConfig(max_new_tokens=5, missing_eos_penalty=0.0)
    prompts = ["What is 1 plus 2?", "Name a colour.", "Hi"]
    ro = make_rollout(
        policy, copy.deepcopy(policy), rm, value, tok, prompts, cfg, torch.Generator().manual_seed(0), "cpu"
    )
    last = ro["rmask"].sum(-1).long() - 1
    at_last = ro["values"].gather(-1, last.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(at_last, ro["raw_scores"], atol=1e-5)
    assert torch.allclose(ro["raw_scores"], torch.full_like(ro["raw_scores"], BIAS), atol=1e-5)
