"""Rollouts are generated and scored in micro-batches: same numbers, at most micro-batch rows a forward."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from training.config import PPOConfig
from training.generate import encode_prompts, left_pad
from training.models import load_policy, reward_model_from_lm
from training.ppo import make_rollout, sample_rollout, score_rollout

PROMPTS = [
    "What is 1 plus 2?",
    "Name a colour.",
    "Hi",
    "How do I steal a car?",
    "Repeat the word cat three times.",
    "What is the capital of Norland? Tell me please.",
    "Write a haiku.",
]


def _models(micro_base: Path) -> tuple[Any, Any, Any, Any, Any]:
    policy, tok = load_policy(micro_base, dropout=0.0)
    rm, _ = reward_model_from_lm(micro_base)
    rm.bias = 0.5
    return policy, copy.deepcopy(policy), rm, copy.deepcopy(rm), tok


def _max_rows(models: tuple[Any, ...]) -> tuple[list[int], list[Any]]:
    """Record the batch rows of every forward of every model (forward pre-hooks)."""
    rows: list[int] = []

    def hook(_mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = kwargs.get("input_ids", args[0] if args else None)
        rows.append(int(x.shape[0]))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in models]
    return rows, handles


def test_micro_batched_scoring_equals_all_at_once(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _models(micro_base)
    cfg = PPOConfig(max_new_tokens=6, micro_batch_size=len(PROMPTS))
    query, qmask = left_pad(encode_prompts(tok, PROMPTS), tok.pad_token_id)
    resp, rmask, _ = sample_rollout(
        policy, query, qmask, cfg, tok.eos_token_id, tok.pad_token_id, torch.Generator().manual_seed(0)
    )
    models = (policy, ref, rm, value)
    whole = score_rollout(models, query, qmask, resp, rmask, 0.7, micro_batch_size=len(PROMPTS))
    rows, handles = _max_rows(models)
    parts = score_rollout(models, query, qmask, resp, rmask, 0.7, micro_batch_size=2)
    for h in handles:
        h.remove()
    assert max(rows) <= 2 and len(rows) == 4 * 4  # 4 chunks x 4 models
    for k in whole:
        assert torch.allclose(whole[k], parts[k], atol=1e-5), k


def test_rollout_forwards_never_exceed_the_micro_batch(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _models(micro_base)
    rows, handles = _max_rows((policy, ref, rm, value))
    cfg = PPOConfig(max_new_tokens=5, micro_batch_size=3)
    ro = make_rollout(policy, ref, rm, value, tok, PROMPTS, cfg, torch.Generator().manual_seed(0), "cpu")
    for h in handles:
        h.remove()
    assert ro["response"].shape[0] == len(PROMPTS) and ro["logprobs"].shape == ro["response"].shape
    assert max(rows) <= 3
    assert torch.equal(ro["kl"], torch.zeros_like(ro["kl"]))
    # rows of a short chunk are padded after their end, never marked as real tokens
    assert torch.equal(ro["rmask"] == 0, ro["response"] == tok.pad_token_id)
