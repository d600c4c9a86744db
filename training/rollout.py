"""PPO rollouts: sampling responses and scoring them with the policy, reference, reward and value models.

Generation and every scoring forward run micro_batch_size rows at a time, so peak memory is set
by the micro-batch, not by the rollout batch; only the response positions are unembedded.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from training.chat import Prompt
from training.config import PPOConfig, SamplingParams
from training.generate import decode_response, encode_prompts, left_pad, sample_tokens
from training.losses import (
    gae_advantages,
    kl_penalised_rewards,
    leave_one_out_advantages,
    logprobs_of,
    masked_whiten,
    position_ids_from_mask,
)


def response_logits(
    model: Any, query: torch.Tensor, qmask: torch.Tensor, response: torch.Tensor, rmask: torch.Tensor
) -> torch.Tensor:
    """Logits that predict each response token: query [B, Tq] (left-padded), response [B, R] -> [B, R, V].

    Only the last R + 1 positions go through the unembedding (logits_to_keep), so the prompt's
    positions never materialise [B, Tq, V] logits.
    """
    ids = torch.cat([query, response], 1)
    mask = torch.cat([qmask, rmask], 1)
    R = response.shape[1]
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), logits_to_keep=R + 1
    )
    return out.logits[:, -(R + 1) : -1]


def response_values(
    value_model: Any, query: torch.Tensor, qmask: torch.Tensor, response: torch.Tensor, rmask: torch.Tensor
) -> torch.Tensor:
    """Value estimates for each response token (read one position earlier, like the logits): [B, R]."""
    ids = torch.cat([query, response], 1)
    mask = torch.cat([qmask, rmask], 1)
    return value_model(ids, mask, per_token=True)[:, query.shape[1] - 1 : -1]


def cat_right_padded(parts: list[torch.Tensor], fill: int) -> torch.Tensor:
    """Concatenate [b_i, R_i] tensors along rows, right-padding each to max R_i with fill: -> [sum b_i, R]."""
    R = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, R - p.shape[1]), value=fill) for p in parts])


@torch.no_grad()
def sample_rollout(
    policy: Any,
    query: torch.Tensor,
    qmask: torch.Tensor,
    cfg: PPOConfig,
    eos_id: int,
    pad_id: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One response per query, micro_batch_size rows at a time: -> (response, rmask [B, R], finished [B])."""
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    resp, masks, fins = [], [], []
    for i in range(0, query.shape[0], cfg.micro_batch_size):
        r, m, f = sample_tokens(
            policy,
            query[i : i + cfg.micro_batch_size],
            qmask[i : i + cfg.micro_batch_size],
            1,
            params,
            eos_id,
            pad_id,
            gen,
        )
        resp.append(r)
        masks.append(m)
        fins.append(f)
    return cat_right_padded(resp, pad_id), cat_right_padded(masks, 0), torch.cat(fins)


@torch.no_grad()
def score_rollout(
    models: tuple[Any, Any, Any, Any],
    query: torch.Tensor,
    qmask: torch.Tensor,
    response: torch.Tensor,
    rmask: torch.Tensor,
    temperature: float,
    micro_batch_size: int,
    dense_reward: bool = False,
) -> dict[str, torch.Tensor]:
    """Policy and reference log-probs, values [B, R] and RM scores [B], micro_batch_size rows per forward.

    models = (policy, reference, reward model, value model; None for no critic: values 0). Log-probs
    are recomputed by full forward passes, never taken from sampling, so at step 0 the KL is exactly
    0. With dense_reward and a reward model that scores tokens (training.implicit), "token_scores"
    [B, R] holds each response token's part of the score too.
    """
    policy, ref, rm, value = models
    dense = dense_reward and hasattr(rm, "token_rewards")
    keys = ["logprobs", "ref_logprobs", "values", "raw_scores"] + (["token_scores"] if dense else [])
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for i in range(0, query.shape[0], micro_batch_size):
        q, qm = query[i : i + micro_batch_size], qmask[i : i + micro_batch_size]
        r, rmk = response[i : i + micro_batch_size], rmask[i : i + micro_batch_size]
        out["logprobs"].append(logprobs_of(response_logits(policy, q, qm, r, rmk), r, temperature))
        out["ref_logprobs"].append(logprobs_of(response_logits(ref, q, qm, r, rmk), r, temperature))
        if value is None:  # no critic (advantage_estimator "rloo")
            out["values"].append(torch.zeros(r.shape, device=r.device))
        else:
            out["values"].append(response_values(value, q, qm, r, rmk).float())
        ids, mask = torch.cat([q, r], 1), torch.cat([qm, rmk], 1)
        if dense:  # entry t scores token t + 1: response token k is at q.shape[1] + k
            per_token = rm.token_rewards(ids, mask).float()
            out["raw_scores"].append(per_token.sum(-1) + rm.bias)
            out["token_scores"].append(per_token[:, q.shape[1] - 1 :])
        else:
            out["raw_scores"].append(rm(ids, mask).float())
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def make_rollout(
    policy: Any,
    ref: Any,
    rm: Any,
    value: Any,
    tok: Any,
    prompts: list[Prompt],
    cfg: PPOConfig,
    gen: torch.Generator,
    device: Any,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Any]:
    """Sample one response per prompt and compute everything the update needs (tensors [B, ...]).

    Every forward runs inside autocast() (the run's mixed-precision context), the policy's and the
    reference's alike, so with equal weights their log-probs are equal and the KL at step 0 is 0.
    """
    for m in (policy, ref, rm, value):
        if m is not None:  # value is None without a critic
            m.eval()
    query, qmask = left_pad(encode_prompts(tok, prompts, cfg.max_prompt_length), tok.pad_token_id)
    query, qmask = query.to(device), qmask.to(device)
    with autocast():
        response, rmask, finished = sample_rollout(
            policy, query, qmask, cfg, tok.eos_token_id, tok.pad_token_id, gen
        )
        models = (policy, ref, rm, value if cfg.advantage_estimator == "gae" else None)
        sc = score_rollout(
            models, query, qmask, response, rmask, cfg.temperature, cfg.micro_batch_size, cfg.dense_reward
        )
    logprobs, values, raw_scores = sc["logprobs"], sc["values"], sc["raw_scores"]
    scores = raw_scores - cfg.missing_eos_penalty * (~finished).float()
    rmask_f = rmask.float()
    rewards, kl = kl_penalised_rewards(
        logprobs, sc["ref_logprobs"], scores, rmask_f, cfg.kl_coef, sc.get("token_scores")
    )
    if cfg.advantage_estimator == "rloo":  # prompts come in groups of n_samples_per_prompt (ppo._iteration)
        advantages = leave_one_out_advantages(rewards, rmask_f, cfg.n_samples_per_prompt)
        returns = values * rmask_f  # no critic: values are 0 and the value model is not run
    else:
        advantages, returns = gae_advantages(rewards, values, rmask_f, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, rmask_f)
    texts = [
        decode_response(tok, r[m.bool()].tolist(), tok.eos_token_id, tok.pad_token_id)
        for r, m in zip(response.cpu(), rmask.cpu(), strict=True)
    ]
    return {
        "query": query,
        "qmask": qmask,
        "response": response,
        "rmask": rmask_f,
        "finished": finished,
        "logprobs": logprobs,
        "values": values * rmask_f,
        "advantages": advantages,
        "returns": returns,
        "scores": scores,
        "raw_scores": raw_scores,
        "kl": kl,
        "texts": texts,
        "prompts": prompts,
    }
