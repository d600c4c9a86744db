"""Evaluating a policy on held-out prompts: completions, RM score, KL against a reference, extra metrics.

Task-specific metrics (such as the simulated world's oracle, training.world.metrics.world_metrics)
come in through `extra_metrics`, so this module knows nothing about any task world.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from training.batching import rm_scores
from training.config import SamplingParams
from training.generate import Sampler, encode_prompts, left_pad
from training.losses import logprobs_of


@torch.no_grad()
def sequence_kl(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    prompts: list[str],
    token_ids: list[list[int]],
    temperature: float = 1.0,
) -> float:
    """Monte-Carlo KL(policy || reference) per sequence: mean over samples of sum_t (log pi - log ref)."""
    from training.batching import right_pad
    from training.ppo import response_logits

    query, qmask = left_pad(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id)
    resp, rmask = right_pad([t or [tokenizer.eos_token_id] for t in token_ids], tokenizer.pad_token_id)
    lp = logprobs_of(response_logits(policy, query, qmask, resp, rmask), resp, temperature)
    lr = logprobs_of(response_logits(reference, query, qmask, resp, rmask), resp, temperature)
    return ((lp - lr) * rmask).sum(-1).mean().item()


def evaluate_policy(
    policy_dir: str | Path,
    prompts: list[str],
    *,
    reward_model_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    params: SamplingParams | None = None,
    batch_size: int = 64,
    extra_metrics: Callable[[Sequence[str], Sequence[str]], dict[str, float]] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Sample one completion per prompt; report RM score, KL vs reference and extra_metrics(prompts, texts).

    Returns {"metrics": {...}, "completions": [text, ...]}; the reference defaults to the policy's parent
    from its manifest when reference_dir is None and the parent exists.
    """
    from training.checkpoints import read_manifest
    from training.models import load_policy, load_reward_model

    params = params or SamplingParams(temperature=1.0, max_new_tokens=32, seed=0)
    sampler = Sampler(policy_dir, device=device)
    comps = [row[0] for row in sampler.sample(prompts, 1, params)]
    texts = [c.text for c in comps]
    metrics: dict[str, Any] = {
        "n": len(prompts),
        "finished": sum(c.finished for c in comps) / max(1, len(comps)),
        "response_tokens": sum(len(c.token_ids) for c in comps) / max(1, len(comps)),
    }
    if reward_model_dir is not None:
        rm = load_reward_model(reward_model_dir).eval()
        metrics["rm_score"] = (
            rm_scores(rm, sampler.tokenizer, prompts, texts, batch_size=batch_size).mean().item()
        )
    if reference_dir is None:
        parent = read_manifest(policy_dir).get("parent")
        reference_dir = parent if parent and Path(parent).exists() else None
    if reference_dir is not None:
        ref, _ = load_policy(reference_dir)
        kls = []
        for i in range(0, len(prompts), batch_size):
            kls.append(
                sequence_kl(
                    sampler.model,
                    ref.eval(),
                    sampler.tokenizer,
                    prompts[i : i + batch_size],
                    [c.token_ids for c in comps[i : i + batch_size]],
                    params.temperature,
                )
                * len(prompts[i : i + batch_size])
            )
        metrics["kl_vs_reference"] = sum(kls) / max(1, len(prompts))
    if extra_metrics is not None:
        metrics.update(extra_metrics(prompts, texts))
    return {"metrics": metrics, "completions": texts}
