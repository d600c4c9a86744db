"""One training-loop skeleton shared by supervised stages (SFT, the reward model; DPO can reuse it).

    result = train_loop(acc, model, examples, make_batch, loss_fn, LoopConfig(...), stage="sft",
                        callbacks=cbs, weight_fn=..., on_epoch_end=..., select_key=...)

What it does, so the stages do not: AdamW (fused where torch supports it) and a cosine schedule,
epochs over a seeded shuffle,
sharding each global batch across processes (rank r takes rows r, r + N, ...), gradient
accumulation inside a rank, optional gradient checkpointing and clipping, metrics reduced across
processes and reported from the main process only, and keeping the best epoch's weights by a
selection key. File I/O stays with the caller: the loop returns weights, it never writes.

The step loss equals the one-process loss at the same global batch: `loss_fn` returns the mean
over the batch's units (tokens, comparison groups) and `weight_fn` how many units that is; each
micro-batch's loss is scaled by its share of the global units before backward, and DDP averages
gradients over ranks, so the gradient is that of the mean over the whole global batch.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.adapters import trainable_parameters
from training.callbacks import Callbacks

Batch = dict[str, torch.Tensor]
LossFn = Callable[[Any, Batch], tuple[torch.Tensor, dict[str, float]]]
SHARD_LOG_ENV = "RLHF_SHARD_LOG"  # a directory: each rank appends the example ids it trained on (tests)


@dataclass
class LoopConfig:
    """What the loop needs from a stage's config; batch_size is global (all processes together)."""

    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    grad_accum_steps: int = 1  # micro-batches per rank per optimizer step
    max_grad_norm: float | None = None
    gradient_checkpointing: bool = False
    seed: int = 0
    min_steps: int = 0  # train more epochs when `epochs` would give fewer optimizer steps than this

    @classmethod
    def from_stage(cls, config: Any) -> LoopConfig:
        """The loop settings of a stage config (SFTConfig, RewardConfig, or any with the same fields)."""
        return cls(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            betas=tuple(config.betas),
            weight_decay=config.weight_decay,
            min_lr_ratio=config.min_lr_ratio,
            warmup_steps=getattr(config, "warmup_steps", 0),
            grad_accum_steps=getattr(config, "grad_accum_steps", 1),
            max_grad_norm=getattr(config, "max_grad_norm", None),
            gradient_checkpointing=getattr(config, "gradient_checkpointing", False),
            seed=config.runtime.seed,
            min_steps=getattr(config, "min_steps", 0),
        )


def epochs_for(steps_per_epoch: int, epochs: int, min_steps: int) -> int:
    """Epochs to run: `epochs`, or more when a small data set would give fewer than `min_steps` steps."""
    if steps_per_epoch <= 0 or min_steps <= 0:
        return epochs
    return max(epochs, math.ceil(min_steps / steps_per_epoch))


@dataclass
class LoopResult:
    """The trained (unwrapped) model, per-epoch metrics and the selected epoch's weights."""

    model: Any
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per optimizer step, the global-batch mean
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None  # CPU copy, main process only


def cosine_lr_lambda(total_steps: int, min_ratio: float, warmup: int = 0) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay from 1 to min_ratio at total_steps."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def epoch_batches(
    n: int, batch_size: int, rng: random.Random, lengths: Sequence[int] | None = None, chunk: int = 50
) -> list[list[int]]:
    """One epoch's global batches of example indices, in a seeded shuffle.

    With lengths, batches are length-grouped (as HF's group_by_length): the shuffled order is cut into
    chunks of `chunk` batches, each chunk sorted by length and split into batches, and the batches are
    shuffled, so a batch pads to nearly its own rows' length while the epoch order stays random.
    """
    order = list(range(n))
    rng.shuffle(order)
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    span = batch_size * chunk
    batches: list[list[int]] = []
    for start in range(0, n, span):
        part = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def shard_rows(global_rows: Sequence[int], rank: int, world: int, accum: int) -> list[list[int]]:
    """This rank's micro-batches of one global batch: rows rank, rank + world, ... split into accum parts.

    A rank left without rows (a short last batch) gets the batch's first row, to be weighted 0, so
    every rank still joins the gradient all-reduce.
    """
    mine = list(global_rows[rank::world]) or [global_rows[0]]
    size = math.ceil(len(mine) / max(1, accum))
    return [mine[i : i + size] for i in range(0, len(mine), size)]


def make_adamw(params: Any, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where it supports the parameters (CPU and CUDA), else the default."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # a device or dtype the fused kernel does not take
        return torch.optim.AdamW(params, **kwargs)


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in backward (non-reentrant, so it works under DDP)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def disable_gradient_checkpointing(model: Any) -> None:
    """Undo enable_gradient_checkpointing (before a model is saved for sampling)."""
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    elif hasattr(model, "gradient_checkpointing_disable"):
        model.gradient_checkpointing_disable()
    model.config.use_cache = True


def log_shard(stage: str, rank: int, step: int, rows: list[int]) -> None:
    """Append the example ids this rank trained on to $RLHF_SHARD_LOG/<stage>-rank<r>.jsonl."""
    out = os.environ.get(SHARD_LOG_ENV)
    if out:
        with open(Path(out) / f"{stage}-rank{rank}.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "ids": rows}) + "\n")


def _rank_batches(
    acc: Any,
    examples: Sequence[Any],
    rows: list[int],
    make_batch: Callable[[list[Any]], Batch],
    weigh: Callable[[Batch], float],
    accum: int,
) -> tuple[list[Batch], list[float], list[int]]:
    """This rank's micro-batches of a global batch, their weights (0 for a stand-in row) and row ids."""
    parts = shard_rows(rows, acc.process_index, acc.num_processes, accum)
    own = bool(rows[acc.process_index :: acc.num_processes])
    batches = [make_batch([examples[j] for j in part]) for part in parts]
    weights = [weigh(b) if own else 0.0 for b in batches]
    return batches, weights, [j for part in parts for j in part] if own else []


def _train_step(
    acc: Any,
    model: Any,
    batches: list[Batch],
    weights: list[float],
    loss_fn: LossFn,
) -> tuple[float, dict[str, float]]:
    """Forward and backward over this rank's micro-batches (synced on the last): the global mean loss."""
    total = acc.reduce(torch.tensor(sum(weights), device=acc.device), "sum").item()
    loss_sum = 0.0
    stats: dict[str, float] = {}
    for i, (b, w) in enumerate(zip(batches, weights, strict=True)):
        sync = nullcontext() if i == len(batches) - 1 else acc.no_sync(model)
        with sync:
            loss, st = loss_fn(model, {k: v.to(acc.device) for k, v in b.items()})
            acc.backward(loss * (w * acc.num_processes / max(total, 1e-12)))
        loss_sum += loss.item() * w
        for k, v in st.items():
            stats[k] = stats.get(k, 0.0) + v * w
    reduced = acc.reduce(torch.tensor([loss_sum, *stats.values()], device=acc.device), "sum") / max(
        total, 1e-12
    )
    return reduced[0].item(), dict(zip(stats, reduced[1:].tolist(), strict=True))


def train_loop(
    acc: Any,
    model: Any,
    examples: Sequence[Any],
    make_batch: Callable[[list[Any]], Batch],
    loss_fn: LossFn,
    cfg: LoopConfig,
    *,
    stage: str,
    callbacks: Callbacks | None = None,
    weight_fn: Callable[[Batch], float] | None = None,
    on_epoch_end: Callable[[int, Any], dict[str, float]] | None = None,
    select_key: Callable[[dict[str, float]], float] | None = None,
    on_step: Callable[[int, int, Any], None] | None = None,
    lengths: Sequence[int] | None = None,
) -> LoopResult:
    """Train model on examples; see the module docstring. Returns the unwrapped model and selection.

    lengths (tokens per example): batches are length-grouped (epoch_batches), which cuts padding.

    make_batch(rows) -> tensors (on CPU; the loop moves them); loss_fn(model, batch) -> (mean loss, stats);
    weight_fn(batch) -> units the mean is over (default: rows); on_epoch_end(epoch, unwrapped model)
    -> eval metrics, called on every process; select_key(metrics) -> higher is better (default: last);
    on_step(step, total, unwrapped model) after every optimizer step, on every process (early stopping).
    """
    cbs = callbacks or Callbacks()
    weigh = weight_fn or (lambda b: float(next(iter(b.values())).shape[0]))
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    opt = make_adamw(trainable_parameters(model), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    epochs = epochs_for(steps_per_epoch, cfg.epochs, cfg.min_steps)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_lr_lambda(total, cfg.min_lr_ratio, cfg.warmup_steps)
    )
    model, opt = acc.prepare(model, opt)
    model.train()
    rng = random.Random(cfg.seed)  # the same order on every rank; each takes its own rows
    result = LoopResult(model=None, steps=0)
    best_key = -math.inf
    for epoch in range(epochs):
        for rows in epoch_batches(len(examples), cfg.batch_size, rng, lengths):
            cbs.check_stop()
            batches, weights, ids = _rank_batches(
                acc, examples, rows, make_batch, weigh, cfg.grad_accum_steps
            )
            log_shard(stage, acc.process_index, result.steps, ids)
            loss, stats = _train_step(acc, model, batches, weights, loss_fn)
            if cfg.max_grad_norm is not None:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad()
            result.steps += 1
            result.losses.append(loss)
            if on_step is not None:
                on_step(result.steps, total, acc.unwrap_model(model))
            if acc.is_main_process:
                cbs.progress(
                    stage,
                    result.steps,
                    total,
                    {"loss": loss, **stats, "lr": sched.get_last_lr()[0], "epoch": epoch},
                )
        best_key = _end_epoch(acc, model, epoch, result, cbs, stage, on_epoch_end, select_key, best_key)
    result.model = acc.unwrap_model(model)
    return result


def _end_epoch(
    acc: Any,
    model: Any,
    epoch: int,
    result: LoopResult,
    cbs: Callbacks,
    stage: str,
    on_epoch_end: Callable[[int, Any], dict[str, float]] | None,
    select_key: Callable[[dict[str, float]], float] | None,
    best_key: float,
) -> float:
    """Evaluate, record the epoch and keep a CPU copy of the weights when the epoch is the best so far."""
    unwrapped = acc.unwrap_model(model)
    metrics: dict[str, float] = {"epoch": epoch}
    if on_epoch_end is not None:
        metrics.update(on_epoch_end(epoch, unwrapped))
        model.train()
    result.history.append(metrics)
    if acc.is_main_process and len(metrics) > 1:
        cbs.log(f"{stage} epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    key = select_key(metrics) if select_key is not None else float(epoch)
    if key >= best_key:
        result.best_epoch = epoch
        state = acc.get_state_dict(model)  # on every process: a collective under DeepSpeed / FSDP
        if acc.is_main_process:
            result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        return key
    return best_key
