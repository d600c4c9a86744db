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
from training.chat import Prompt
from training.config import SamplingParams
from training.generate import Sampler, encode_prompts, left_pad
from training.losses import logprobs_of

WHOLE = 1 << 20  # tokens: "no cut" for a prompt when the model names no context window


@torch.no_grad()
def sequence_kl(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    prompts: list[Prompt],
    token_ids: list[list[int]],
    temperature: float = 1.0,
    max_prompt_tokens: int | None = None,
) -> float:
    """Monte-Carlo KL(policy || reference) per sequence: mean over samples of sum_t (log pi - log ref);
    prompts keep their last max_prompt_tokens, as the sampler kept them (Sampler.prompt_budget)."""
    from training.batching import right_pad
    from training.ppo import response_logits

    query, qmask = left_pad(encode_prompts(tokenizer, prompts, max_prompt_tokens), tokenizer.pad_token_id)
    resp, rmask = right_pad([t or [tokenizer.eos_token_id] for t in token_ids], tokenizer.pad_token_id)
    # the inputs go where the models are (the sampler may have moved the policy to a GPU)
    device = next(policy.parameters()).device
    query, qmask, resp, rmask = (t.to(device) for t in (query, qmask, resp, rmask))
    lp = logprobs_of(response_logits(policy, query, qmask, resp, rmask), resp, temperature)
    lr = logprobs_of(response_logits(reference, query, qmask, resp, rmask), resp, temperature)
    return ((lp - lr) * rmask).sum(-1).mean().item()


def sampler_dtype(sampler: Sampler) -> torch.dtype:
    """The dtype the sampler's policy runs in (bf16 on a GPU)."""
    return next(sampler.model.parameters()).dtype


def evaluate_policy(
    policy_dir: str | Path,
    prompts: list[Prompt],
    *,
    reward_model_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    params: SamplingParams | None = None,
    batch_size: int = 64,
    extra_metrics: Callable[[Sequence[Any], Sequence[str]], dict[str, float]] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Sample one completion per prompt; report RM score, KL vs reference and extra_metrics(prompts, texts).

    Returns {"metrics": {...}, "completions": [text, ...], "rm_scores": [one per prompt]}; the
    reference defaults to the policy's parent from its manifest when reference_dir is None and the
    parent exists. The reference and reward model run on the sampler's device (a GPU when there is
    one), the reference in the policy's dtype.
    """
    from training.checkpoints import read_manifest
    from training.models import load_policy, load_scoring_model

    params = params or SamplingParams(temperature=1.0, max_new_tokens=32, seed=0)
    sampler = Sampler(policy_dir, device=None if device == "auto" else device)
    comps = [row[0] for row in sampler.sample(prompts, 1, params)]
    texts = [c.text for c in comps]
    metrics: dict[str, Any] = {
        "n": len(prompts),
        "finished": sum(c.finished for c in comps) / max(1, len(comps)),
        "response_tokens": sum(len(c.token_ids) for c in comps) / max(1, len(comps)),
    }
    per_prompt: list[float] = []
    if reward_model_dir is not None:
        # scoring only: the sampler's dtype too (bf16 on a GPU)
        rm = load_scoring_model(reward_model_dir).eval().to(sampler.device, dtype=sampler_dtype(sampler))
        # prompt and completion whole, up to the context window, as PPO's reward scores them (rm_scores'
        # default of 128 tokens cut longer ones); an over-long prompt keeps its last tokens, as in training
        budget = sampler.prompt_budget(params.max_new_tokens)
        span = (budget or WHOLE) + params.max_new_tokens + 1  # + EOS; rm_scores fits it to the RM's window
        scores = rm_scores(rm, sampler.tokenizer, prompts, texts, span, batch_size=batch_size)
        metrics["rm_score"] = scores.float().mean().item()
        per_prompt = [float(s) for s in scores.float().tolist()]
    if reference_dir is None:
        parent = read_manifest(policy_dir).get("parent")
        reference_dir = parent if parent and Path(parent).exists() else None
    if reference_dir is not None:
        loaded: Any = load_policy(reference_dir)[0]
        # the reference in the sampler's device and dtype: equal weights give a KL of exactly 0
        ref: Any = loaded.to(sampler.device, dtype=sampler_dtype(sampler))
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
                    sampler.prompt_budget(params.max_new_tokens),
                )
                * len(prompts[i : i + batch_size])
            )
        metrics["kl_vs_reference"] = sum(kls) / max(1, len(prompts))
    if extra_metrics is not None:
        metrics.update(extra_metrics(prompts, texts))
    return {"metrics": metrics, "completions": texts, "rm_scores": per_prompt}
