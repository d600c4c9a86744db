"""PPO (and PPO-ptx) against a reward model with a per-token KL penalty (InstructGPT §3.5, App. C.3-C.4).

One iteration: sample a rollout batch with the live policy (KV cache, prompts computed once),
recompute log-probs of what was sampled with the policy's and the reference's forward passes at the
sampling temperature, score with the RM at the last real response token, build per-token rewards
(-beta * KL, plus the score on the last token, minus a penalty for responses that never end), GAE
with gamma 1, whiten advantages, then `ppo_epochs` passes over minibatches of clipped policy and
value losses (plus gamma_ptx * pretraining NLL for PPO-ptx); the EMA of the policy's weights is kept.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import torch

from training.callbacks import Callbacks
from training.checkpoints import write_model_dir
from training.config import PPOConfig, SamplingParams
from training.data import read_batch
from training.generate import decode_response, encode_prompts, left_pad, sample_tokens
from training.losses import (
    ema_update,
    entropy_of,
    gae_advantages,
    kl_penalised_rewards,
    logprobs_of,
    masked_mean,
    masked_whiten,
    position_ids_from_mask,
    ppo_policy_loss,
    ppo_value_loss,
)
from training.models import load_policy, load_reward_model, make_accelerator, seed_everything
from training.ppo_state import checkpoint_path, load_state, save_state


def response_logits(
    model: Any, query: torch.Tensor, qmask: torch.Tensor, response: torch.Tensor, rmask: torch.Tensor
) -> torch.Tensor:
    """Logits that predict each response token: query [B, Tq] (left-padded), response [B, R] -> [B, R, V]."""
    ids = torch.cat([query, response], 1)
    mask = torch.cat([qmask, rmask], 1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    return logits[:, query.shape[1] - 1 : -1]


def response_values(
    value_model: Any, query: torch.Tensor, qmask: torch.Tensor, response: torch.Tensor, rmask: torch.Tensor
) -> torch.Tensor:
    """Value estimates for each response token (read one position earlier, like the logits): [B, R]."""
    ids = torch.cat([query, response], 1)
    mask = torch.cat([qmask, rmask], 1)
    return value_model.token_values(ids, mask)[:, query.shape[1] - 1 : -1]


@torch.no_grad()
def make_rollout(
    policy: Any,
    ref: Any,
    rm: Any,
    value: Any,
    tok: Any,
    prompts: list[str],
    cfg: PPOConfig,
    gen: torch.Generator,
    device: Any,
) -> dict[str, Any]:
    """Sample one response per prompt and compute everything the update needs (tensors [B, ...])."""
    for m in (policy, ref, rm, value):
        m.eval()
    query, qmask = left_pad(encode_prompts(tok, prompts, cfg.max_prompt_length), tok.pad_token_id)
    query, qmask = query.to(device), qmask.to(device)
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    response, rmask, finished = sample_tokens(
        policy, query, qmask, 1, params, tok.eos_token_id, tok.pad_token_id, gen
    )
    # Recomputed by full forward passes, never taken from sampling: at step 0 the KL is exactly 0.
    logprobs = logprobs_of(response_logits(policy, query, qmask, response, rmask), response, cfg.temperature)
    ref_logprobs = logprobs_of(response_logits(ref, query, qmask, response, rmask), response, cfg.temperature)
    values = response_values(value, query, qmask, response, rmask)
    raw_scores = rm(torch.cat([query, response], 1), torch.cat([qmask, rmask], 1)).float()  # [B]
    scores = raw_scores - cfg.missing_eos_penalty * (~finished).float()
    rmask_f = rmask.float()
    rewards, kl = kl_penalised_rewards(logprobs, ref_logprobs, scores, rmask_f, cfg.kl_coef)
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


def ppo_minibatch_loss(
    policy: Any, value: Any, mb: dict[str, torch.Tensor], cfg: PPOConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss + vf_coef * clipped value loss on one minibatch, and its stats."""
    logits = response_logits(policy, mb["query"], mb["qmask"], mb["response"], mb["rmask"].long())
    new_logprobs = logprobs_of(logits, mb["response"], cfg.temperature)
    pg_loss, clipfrac = ppo_policy_loss(
        new_logprobs, mb["logprobs"], mb["advantages"], mb["rmask"], cfg.clip_range
    )
    vpred = response_values(value, mb["query"], mb["qmask"], mb["response"], mb["rmask"].long())
    vf_loss = ppo_value_loss(vpred, mb["values"], mb["returns"], mb["rmask"], cfg.clip_range_value)
    with torch.no_grad():
        ent = masked_mean(entropy_of(logits, cfg.temperature), mb["rmask"]).item()
        approx_kl = masked_mean(0.5 * (new_logprobs - mb["logprobs"]) ** 2, mb["rmask"]).item()
    return pg_loss + cfg.vf_coef * vf_loss, {
        "pg_loss": pg_loss.item(),
        "vf_loss": vf_loss.item(),
        "clipfrac": clipfrac.item(),
        "entropy": ent,
        "approx_kl": approx_kl,
    }


def load_ptx_rows(cfg: PPOConfig, tok: Any, seq_len: int = 64) -> torch.Tensor:
    """Pretraining rows for PPO-ptx: [N, seq_len] token ids (from cfg.ptx_data or the world corpus)."""
    import json

    from training.models import _pack

    if cfg.ptx_data is None:
        from training.world import make_corpus

        docs = make_corpus(2000, seed=cfg.runtime.seed + 1)
    elif cfg.ptx_data.endswith(".jsonl"):
        docs = [
            json.loads(line)["text"] for line in Path(cfg.ptx_data).read_text().splitlines() if line.strip()
        ]
    else:
        docs = Path(cfg.ptx_data).read_text().split("\n\n")
    return _pack(tok, docs, seq_len)


def _oracle_mean(prompts: list[str], texts: list[str]) -> float | None:
    """Mean simulated-world oracle score where the prompts are the world's (else None)."""
    from training.world import oracle_score, parse_prompt

    vals = [oracle_score(p, t) for p, t in zip(prompts, texts, strict=True) if parse_prompt(p) is not None]
    return sum(vals) / len(vals) if vals else None


def _rollout_stats(ro: dict[str, Any]) -> dict[str, float]:
    stats = {
        "rm_score": ro["raw_scores"].mean().item(),
        "reward": ro["scores"].mean().item(),
        "kl": ro["kl"].sum(-1).mean().item(),
        "response_length": ro["rmask"].sum(-1).mean().item(),
        "finished": ro["finished"].float().mean().item(),
    }
    oracle = _oracle_mean(ro["prompts"], ro["texts"])
    if oracle is not None:
        stats["oracle_score"] = oracle
    return stats


def ppo_update(
    policy: Any,
    value: Any,
    opt: Any,
    acc: Any,
    ro: dict[str, Any],
    cfg: PPOConfig,
    ptx_rows: torch.Tensor | None,
    rng: random.Random,
) -> dict[str, float]:
    """ppo_epochs passes of minibatch updates over one rollout; returns mean stats."""
    policy.train()
    value.train()
    B = ro["response"].shape[0]
    keys = ("query", "qmask", "response", "rmask", "logprobs", "values", "advantages", "returns")
    sums: dict[str, float] = {}
    n = 0
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(B, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        for i in range(0, B, cfg.minibatch_size):
            idx = order[i : i + cfg.minibatch_size].to(ro["response"].device)
            mb = {k: ro[k][idx] for k in keys}
            loss, stats = ppo_minibatch_loss(policy, value, mb, cfg)
            if cfg.ptx_coef > 0 and ptx_rows is not None:
                rows = ptx_rows[torch.randint(0, ptx_rows.shape[0], (cfg.ptx_batch_size,))].to(acc.device)
                ptx = policy(input_ids=rows, labels=rows).loss
                loss = loss + cfg.ptx_coef * ptx
                stats["ptx_loss"] = ptx.item()
            acc.backward(loss)
            acc.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.max_grad_norm)
            opt.step()
            opt.zero_grad()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
    return {k: v / max(1, n) for k, v in sums.items()}


def run_ppo(
    config: PPOConfig,
    batch_dir: str | Path,
    policy_dir: str | Path,
    reward_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
) -> Path:
    """Optimise the policy at policy_dir against the reward model on the batch's train prompts.

    The KL reference is policy_dir itself; the value model starts as a copy of the reward model.
    Writes the policy (the EMA weights when ema_decay is set) to out_dir; the manifest's metrics hold
    a per-iteration history of RM score, KL, response length, losses and (for world prompts) oracle score.
    """
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    acc = make_accelerator(config.runtime)
    batch = read_batch(batch_dir)
    prompts = [r["prompt"] for r in batch.split("prompts", "train")]
    if not prompts:
        raise ValueError(f"{batch_dir}: no train prompts in prompts.jsonl")
    policy, tok = load_policy(policy_dir, dropout=0.0)  # no dropout during RL
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    rm = load_reward_model(reward_model_dir).eval().requires_grad_(False)
    value = load_reward_model(reward_model_dir)
    opt = torch.optim.AdamW(
        [
            {"params": policy.parameters(), "lr": config.lr},
            {"params": value.parameters(), "lr": config.value_lr},
        ],
        eps=1e-5,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps)))
    policy, value, opt = acc.prepare(policy, value, opt)
    ref, rm = ref.to(acc.device), rm.to(acc.device)
    ema = [p.detach().clone() for p in acc.unwrap_model(policy).parameters()] if config.ema_decay else None
    ptx_rows = load_ptx_rows(config, tok) if config.ptx_coef > 0 else None
    rng = random.Random(config.runtime.seed)
    gen = torch.Generator(device=acc.device).manual_seed(config.runtime.seed)
    iters = max(1, config.total_episodes // config.rollout_batch_size)
    if iters < 20:
        cbs.log(
            f"ppo: {config.total_episodes} episodes in rollouts of {config.rollout_batch_size} "
            f"are only {iters} iterations"
        )
    history: list[dict[str, float]] = []
    ckpt = checkpoint_path(out_dir)
    parts = {
        "policy": acc.unwrap_model(policy), "value": acc.unwrap_model(value), "opt": opt, "sched": sched,
        "rng": rng, "gen": gen,
    }  # fmt: skip
    state = load_state(ckpt, parts, config.to_dict()) if config.resume else None
    start = 0
    if state is not None:
        start, history = state["iteration"] + 1, state["history"]
        if ema is not None:
            ema = [e.to(acc.device) for e in state["ema"]]
        cbs.log(f"ppo: resumed from {ckpt} after iteration {start} of {iters}")
    for it in range(start, iters):
        cbs.check_stop()
        batch_prompts = [prompts[rng.randrange(len(prompts))] for _ in range(config.rollout_batch_size)]
        ro = make_rollout(
            acc.unwrap_model(policy),
            ref,
            rm,
            acc.unwrap_model(value),
            tok,
            batch_prompts,
            config,
            gen,
            acc.device,
        )
        stats = {"iteration": it, **_rollout_stats(ro)}
        stats.update(ppo_update(policy, value, opt, acc, ro, config, ptx_rows, rng))
        sched.step()
        if ema is not None and config.ema_decay is not None:
            decay = min(
                config.ema_decay, (1 + it) / (10 + it)
            )  # warm-up so short runs are not stuck near the start
            ema_update(ema, list(acc.unwrap_model(policy).parameters()), decay)
        history.append(stats)
        cbs.progress("ppo", it + 1, iters, stats)
        if config.checkpoint_every and (it + 1) % config.checkpoint_every == 0 and it + 1 < iters:
            save_state(ckpt, it, {**parts, "ema": ema, "history": history}, config.to_dict())
    final = acc.unwrap_model(policy).cpu()
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(final.parameters(), ema, strict=True):
                p.copy_(e)
    last = history[-1]
    metrics: dict[str, Any] = {
        "iterations": iters,
        "episodes": iters * config.rollout_batch_size,
        "history": history,
        **{k: last[k] for k in ("rm_score", "kl", "response_length", "finished") if k in last},
    }

    def write(tmp: Path) -> None:
        final.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    written = write_model_dir(
        out_dir,
        write,
        kind="policy",
        parent=str(policy_dir),
        run=run,
        export_batch=batch.manifest.get("id"),
        config={"ppo": config.to_dict(), "reward_model": str(reward_model_dir)},
        metrics=metrics,
    )
    ckpt.unlink(missing_ok=True)
    return written
