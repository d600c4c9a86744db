"""PPO (and PPO-ptx) against a reward model with a per-token KL penalty (InstructGPT §3.5, App. C.3-C.4).

One iteration: sample a rollout batch with the live policy (KV cache, prompts computed once),
recompute log-probs of what was sampled with the policy's and the reference's forward passes at the
sampling temperature, score with the RM at the last real response token, build per-token rewards
(-beta * KL, plus the score on the last token, minus a penalty for responses that never end; with
`dense_reward` an implicit RM's per-token log-ratios go on their own tokens instead), GAE
with gamma 1, whiten advantages, then `ppo_epochs` passes over minibatches of clipped policy and
value losses (plus gamma_ptx * pretraining NLL for PPO-ptx); the EMA of the policy's weights is kept.
About 400 lines on purpose: the stage's loop, its minibatch step and its writer read best together;
rollouts live in training/rollout.py, the resumable state in training/ppo_state.py.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from training.adapters import frozen_reference, merged, trainable_parameters, wrap_policy, wrap_reward_model
from training.callbacks import Callbacks, resolve_hook
from training.chat import Prompt, row_prompt
from training.checkpoints import write_policy_dir
from training.config import PPOConfig
from training.data import BatchError, read_batch
from training.errors import InputError
from training.implicit import is_implicit, kl_coef_note
from training.loop import disable_gradient_checkpointing, enable_gradient_checkpointing, log_shard, make_adamw
from training.losses import (
    ema_update,
    entropy_of,
    logprobs_of,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
)
from training.models import (
    context_window,
    fit_to_context,
    load_frozen_reward_model,
    load_policy,
    load_reward_model,
    make_accelerator,
    reward_model_from_lm,
    seed_everything,
)
from training.ppo_state import checkpoint_path, load_state, save_state
from training.rollout import (
    cat_right_padded,
    make_rollout,
    response_logits,
    response_values,
    sample_rollout,
    score_rollout,
)

__all__ = [
    "cat_right_padded",
    "make_rollout",
    "ppo_update",
    "response_logits",
    "response_values",
    "run_ppo",
    "sample_rollout",
    "score_rollout",
]


def ppo_minibatch_loss(
    policy: Any, value: Any, mb: dict[str, torch.Tensor], cfg: PPOConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy loss + vf_coef * clipped value loss on one minibatch (the policy loss alone
    without a critic), and its stats."""
    logits = response_logits(policy, mb["query"], mb["qmask"], mb["response"], mb["rmask"].long())
    new_logprobs = logprobs_of(logits, mb["response"], cfg.temperature)
    pg_loss, clipfrac = ppo_policy_loss(
        new_logprobs, mb["logprobs"], mb["advantages"], mb["rmask"], cfg.clip_range
    )
    with torch.no_grad():
        ent = masked_mean(entropy_of(logits, cfg.temperature), mb["rmask"]).item()
        approx_kl = masked_mean(0.5 * (new_logprobs - mb["logprobs"]) ** 2, mb["rmask"]).item()
    stats = {"pg_loss": pg_loss.item(), "clipfrac": clipfrac.item(), "entropy": ent, "approx_kl": approx_kl}
    if cfg.advantage_estimator != "gae":  # no critic: the value model is neither run nor trained
        return pg_loss, stats
    vpred = response_values(value, mb["query"], mb["qmask"], mb["response"], mb["rmask"].long())
    vf_loss = ppo_value_loss(vpred, mb["values"], mb["returns"], mb["rmask"], cfg.clip_range_value)
    return pg_loss + cfg.vf_coef * vf_loss, {**stats, "vf_loss": vf_loss.item()}


def load_ptx_rows(
    cfg: PPOConfig, tok: Any, seq_len: int = 64, ptx_docs: Callable[[int], list[str]] | None = None
) -> torch.Tensor:
    """Pretraining rows for PPO-ptx: [N, seq_len] token ids, from cfg.ptx_data or else the caller's
    ptx_docs(seed) (the demo's: the simulated world's corpus, training.world.hooks)."""
    import json

    from training.models import pack_documents

    if cfg.ptx_data is None:
        if ptx_docs is None:
            raise ValueError("PPO-ptx needs pre-training text: set ptx_data (or pass a ptx_docs hook)")
        docs = ptx_docs(cfg.runtime.seed + 1)
    elif cfg.ptx_data.endswith(".jsonl"):
        docs = [
            json.loads(line)["text"] for line in Path(cfg.ptx_data).read_text().splitlines() if line.strip()
        ]
    else:
        docs = Path(cfg.ptx_data).read_text().split("\n\n")
    return pack_documents(tok, docs, seq_len)


ExtraMetrics = Callable[[list[Prompt], list[str]], dict[str, float]]


def _rollout_stats(ro: dict[str, Any], extra_metrics: ExtraMetrics | None = None) -> dict[str, float]:
    stats = {
        "rm_score": ro["raw_scores"].mean().item(),
        "reward": ro["scores"].mean().item(),
        "kl": ro["kl"].sum(-1).mean().item(),
        "response_length": ro["rmask"].sum(-1).mean().item(),
        "finished": ro["finished"].float().mean().item(),
    }
    if extra_metrics is not None:  # task-specific scores (the world's oracle); same keys on every rank
        stats.update(extra_metrics(ro["prompts"], ro["texts"]))
    return stats


def reduce_stats(acc: Any, stats: dict[str, float]) -> dict[str, float]:
    """Mean of each stat over processes, NaNs left out (a stat NaN everywhere is dropped)."""
    keys = sorted(stats)
    vals = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=acc.device)
    have = ~vals.isnan()
    sums = acc.reduce(torch.stack([torch.where(have, vals, 0.0), have.double()]), "sum")
    return {k: (sums[0, i] / sums[1, i]).item() for i, k in enumerate(keys) if sums[1, i] > 0}


def _no_sync_unless(acc: Any, stack: ExitStack, model: Any, sync: bool) -> None:
    if not sync:
        stack.enter_context(acc.no_sync(model))


def ppo_minibatch_step(
    policy: Any,
    value: Any,
    acc: Any,
    mb: dict[str, torch.Tensor],
    cfg: PPOConfig,
    ptx_rows: torch.Tensor | None,
    gen: torch.Generator,
) -> dict[str, float]:
    """Gradients of one minibatch, micro_batch_size rows per forward, each forward with its own backward.

    Chunks are weighted by their share of the minibatch's response tokens (the token mean is exact);
    gradients are all-reduced once per model, on its last backward. PPO-ptx runs its forward and
    backward after the PPO chunks, never a second forward through DDP before a backward.
    """
    ptx = cfg.ptx_coef > 0 and ptx_rows is not None
    n_tok = mb["rmask"].sum().clamp(min=1)
    starts = list(range(0, mb["response"].shape[0], cfg.micro_batch_size))
    stats: dict[str, float] = {}
    for j, i in enumerate(starts):
        last = j == len(starts) - 1
        part = {k: v[i : i + cfg.micro_batch_size] for k, v in mb.items()}
        w = (part["rmask"].sum() / n_tok).item()
        with ExitStack() as stack:
            _no_sync_unless(acc, stack, policy, last and not ptx)
            if value is not None:
                _no_sync_unless(acc, stack, value, last)
            loss, st = ppo_minibatch_loss(policy, value, part, cfg)
            acc.backward(loss * w)
        for k, v in st.items():
            stats[k] = stats.get(k, 0.0) + v * w
    if ptx and ptx_rows is not None:
        rows = ptx_rows[torch.randint(0, ptx_rows.shape[0], (cfg.ptx_batch_size,), generator=gen)]
        rows = rows.to(acc.device)
        ptx_loss = policy(input_ids=rows, labels=rows).loss
        acc.backward(cfg.ptx_coef * ptx_loss)
        stats["ptx_loss"] = ptx_loss.item()
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
    """ppo_epochs passes of minibatch updates over this process's rollout; returns mean stats."""
    policy.train()
    if value is not None:
        value.train()
    B = ro["response"].shape[0]
    keys = ("query", "qmask", "response", "rmask", "logprobs", "values", "advantages", "returns")
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    sums: dict[str, float] = {}
    n = 0
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(B, generator=gen)
        for i in range(0, B, cfg.minibatch_size):
            idx = order[i : i + cfg.minibatch_size].to(ro["response"].device)
            stats = ppo_minibatch_step(policy, value, acc, {k: ro[k][idx] for k in keys}, cfg, ptx_rows, gen)
            acc.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.max_grad_norm)
            opt.step()
            opt.zero_grad()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
    return {k: v / max(1, n) for k, v in sums.items()}


def _ppo_models(config: PPOConfig, policy_dir: str | Path, reward_model_dir: str | Path, acc: Any) -> Any:
    """(policy, reference, reward model, value model, tokenizer), the reference and RM frozen; the value
    model is None without a critic (advantage_estimator "rloo").

    The reference keeps the policy's parameter dtype and runs in the same autocast context, so the
    KL at step 0 is exactly 0; the reward model (a score only) is bf16 when the run is bf16 on a GPU.
    The value model is trained: fp32 master weights under the run's autocast, like the policy.
    """
    policy, tok = load_policy(policy_dir, dropout=0.0)  # no dropout during RL
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    policy = wrap_policy(policy, config)  # LoRA when config.lora_r > 0
    ref = frozen_reference(policy).to(acc.device)  # with LoRA: the policy with its adapter off, no copy
    rm = load_frozen_reward_model(reward_model_dir, acc)
    if config.advantage_estimator != "gae":  # no critic: no value model is built (a policy's worth of memory)
        return policy, ref, rm, None, tok
    # The value model starts from the RM (the paper); an implicit RM has no scalar head to start from,
    # so it starts from the policy with a fresh head.
    implicit = is_implicit(reward_model_dir)
    start = reward_model_from_lm(policy_dir)[0] if implicit else load_reward_model(reward_model_dir)
    value = wrap_reward_model(start, config)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(value.model)
    return policy, ref, rm, value, tok


def _fit_prompt_length(config: PPOConfig, policy: Any, cbs: Callbacks) -> PPOConfig:
    """config, or a copy with max_prompt_length shortened so that prompt and response fit the policy's
    context window (the caller's config is left as it was)."""
    room = fit_to_context(config.max_prompt_length + config.max_new_tokens, policy) - config.max_new_tokens
    if room < 1:
        raise InputError(
            f"max_new_tokens {config.max_new_tokens} leaves no room for a prompt in the policy's "
            f"context window ({context_window(policy)} tokens)"
        )
    if room < config.max_prompt_length:
        cbs.log(f"ppo: max_prompt_length {config.max_prompt_length} -> {room}, to fit the context window")
        return dataclasses.replace(config, max_prompt_length=room)
    return config


def _local_config(config: PPOConfig, world: int) -> PPOConfig:
    """This process's share: rollout and minibatch sizes are global, divided over the processes (the
    rollout in whole groups of n_samples_per_prompt)."""
    k = config.n_samples_per_prompt
    return dataclasses.replace(
        config,
        rollout_batch_size=max(k, config.rollout_batch_size // world // k * k),
        minibatch_size=max(1, config.minibatch_size // world),
    )


def run_ppo(
    config: PPOConfig,
    batch_dir: str | Path,
    policy_dir: str | Path,
    reward_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
    method: str | None = None,
    extra_metrics: ExtraMetrics | str | None = None,
    ptx_docs: Callable[[int], list[str]] | str | None = None,
) -> Path:
    """Optimise the policy at policy_dir against the reward model on the batch's train prompts.

    The KL reference is policy_dir itself; the value model starts as a copy of the reward model (with
    advantage_estimator "rloo" there is none: the baseline is the other samples of the same prompt).
    Writes the policy (the EMA weights when ema_decay is set) to out_dir; the manifest's metrics hold
    a per-iteration history of RM score, KL, response length, losses and what extra_metrics(prompts,
    texts) adds (the demo's: the world's oracle score). ptx_docs(seed) gives PPO-ptx its text when
    config.ptx_data is unset. Both hooks are callables or "module:attribute" paths.
    Under several processes each samples its own share of every rollout batch (its own seed), stats
    are averaged over processes and only the main process writes.
    """
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    acc = make_accelerator(config.runtime)
    batch = read_batch(batch_dir)
    prompts = [row_prompt(r) for r in batch.split("prompts", "train")]
    if not prompts:
        raise BatchError(f"{batch_dir}: no train prompts in prompts.jsonl")
    policy, ref, rm, value, tok = _ppo_models(config, policy_dir, reward_model_dir, acc)
    config = _fit_prompt_length(config, policy, cbs)
    local = _local_config(config, acc.num_processes)
    groups = [{"params": trainable_parameters(policy), "lr": config.lr}]
    if value is not None:
        groups.append({"params": trainable_parameters(value), "lr": config.value_lr})
    opt = make_adamw(groups, eps=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps)))
    if value is None:
        policy, opt = acc.prepare(policy, opt)
    else:
        policy, value, opt = acc.prepare(policy, value, opt)
    # EMA of the weights that train (with LoRA: the adapters only).
    trained = trainable_parameters(acc.unwrap_model(policy))
    ema = [p.detach().clone() for p in trained] if config.ema_decay else None
    extra = resolve_hook(extra_metrics)
    ptx_rows = load_ptx_rows(config, tok, ptx_docs=resolve_hook(ptx_docs)) if config.ptx_coef > 0 else None
    rng = random.Random(config.runtime.seed + 1000 * acc.process_index)
    gen = torch.Generator(device=acc.device).manual_seed(config.runtime.seed + 1000 * acc.process_index)
    episodes = config.episodes_for(len(prompts))
    if episodes > config.total_episodes:
        cbs.log(
            f"ppo: {episodes} episodes instead of total_episodes {config.total_episodes}: at least "
            f"{config.min_prompt_passes:g} per train prompt ({len(prompts)} prompts, min_prompt_passes)"
        )
    iters = max(1, episodes // config.rollout_batch_size)
    if iters < 20:
        rollout = config.rollout_batch_size
        cbs.log(f"ppo: {episodes} episodes in rollouts of {rollout} are only {iters} iterations")
    if note := kl_coef_note(reward_model_dir, config.kl_coef):
        cbs.log(note)
    if config.dense_reward and not is_implicit(reward_model_dir):
        cbs.log("ppo: dense_reward needs an implicit reward model; this one's scores go on the last token")
    history: list[dict[str, float]] = []
    ckpt = checkpoint_path(out_dir)
    parts = {"policy": acc.unwrap_model(policy), "opt": opt, "sched": sched, "rng": rng, "gen": gen}
    if value is not None:
        parts["value"] = acc.unwrap_model(value)
    state = load_state(ckpt, parts, config.to_dict()) if config.resume else None
    if config.resume and state is None and ckpt.exists():
        cbs.log(f"ppo: {ckpt} is from other settings or another version; starting afresh (it is replaced)")
    start = 0
    if state is not None:
        start, history = state["iteration"] + 1, state["history"]
        if ema is not None:
            ema = [e.to(acc.device) for e in state["ema"]]
        cbs.log(f"ppo: resumed from {ckpt} after iteration {start} of {iters}")
    for it in range(start, iters):
        cbs.check_stop()
        models, rngs = (policy, ref, rm, value), (rng, gen)
        stats = _iteration(acc, models, opt, tok, prompts, local, rngs, ptx_rows, it, extra)
        sched.step()
        if ema is not None and config.ema_decay is not None:
            decay = min(
                config.ema_decay, (1 + it) / (10 + it)
            )  # warm-up so short runs are not stuck near the start
            ema_update(ema, trainable_parameters(acc.unwrap_model(policy)), decay)
        history.append(stats)
        if acc.is_main_process:
            cbs.progress("ppo", it + 1, iters, stats)
            if config.checkpoint_every and (it + 1) % config.checkpoint_every == 0 and it + 1 < iters:
                save_state(ckpt, it, {**parts, "ema": ema, "history": history}, config.to_dict())
    if acc.is_main_process:
        final = _final_policy(acc.unwrap_model(policy), ema)
        _write_ppo(
            final, tok, out_dir, policy_dir, reward_model_dir, batch, config, history, iters, run, method
        )
    acc.wait_for_everyone()
    return Path(out_dir)


def _iteration(
    acc: Any,
    models: tuple[Any, Any, Any, Any],
    opt: Any,
    tok: Any,
    prompts: list[Prompt],
    cfg: PPOConfig,
    rngs: tuple[random.Random, torch.Generator],
    ptx_rows: torch.Tensor | None,
    it: int,
    extra_metrics: ExtraMetrics | None = None,
) -> dict[str, float]:
    """One PPO iteration on this process's share: rollout, update; stats averaged over processes."""
    policy, ref, rm, value = models
    rng, gen = rngs
    k = cfg.n_samples_per_prompt  # each picked prompt k times in a row (the groups "rloo" needs)
    picked = [i for _ in range(cfg.rollout_batch_size // k) for i in [rng.randrange(len(prompts))] * k]
    log_shard("ppo", acc.process_index, it, picked)
    scorers = (acc.unwrap_model(policy), ref, rm, None if value is None else acc.unwrap_model(value))
    ro = make_rollout(*scorers, tok, [prompts[i] for i in picked], cfg, gen, acc.device, acc.autocast)
    stats = _rollout_stats(ro, extra_metrics)
    stats.update(ppo_update(policy, value, opt, acc, ro, cfg, ptx_rows, rng))
    return {"iteration": it, **reduce_stats(acc, stats)}


def _final_policy(policy: Any, ema: list[torch.Tensor] | None) -> Any:
    """A CPU copy of the policy with the EMA weights when kept, ready to sample (cache on)."""
    final = copy.deepcopy(policy).cpu()
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(trainable_parameters(final), ema, strict=True):
                p.copy_(e)
    final = merged(final)  # a registered version is a plain model directory
    disable_gradient_checkpointing(final)
    return final


def _write_ppo(
    final: Any,
    tok: Any,
    out_dir: str | Path,
    policy_dir: str | Path,
    reward_model_dir: str | Path,
    batch: Any,
    config: PPOConfig,
    history: list[dict[str, float]],
    iters: int,
    run: str | int | None,
    method: str | None,
) -> Path:
    """Write the PPO policy and its per-iteration history as an immutable model directory."""
    last = history[-1]
    metrics: dict[str, Any] = {
        "iterations": iters,
        "episodes": iters * config.rollout_batch_size,
        "history": history,
        **{k: last[k] for k in ("rm_score", "kl", "response_length", "finished") if k in last},
    }

    written = write_policy_dir(
        out_dir,
        final,
        tok,
        parent=policy_dir,
        run=run,
        method=method,
        export_batch=batch.manifest.get("id"),
        config={"ppo": config.to_dict(), "reward_model": str(reward_model_dir)},
        metrics=metrics,
    )
    checkpoint_path(out_dir).unlink(missing_ok=True)  # finished: nothing left to resume
    return written
