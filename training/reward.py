"""Reward model on grouped comparisons (InstructGPT §3.5, App. C.2, eq. 1)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from training.adapters import plain_copy, wrap_reward_model
from training.batching import (
    EncodeCache,
    encode_cached,
    group_lengths,
    pair_weights,
    pretokenize,
    right_pad,
    rm_scores,
)
from training.callbacks import Callbacks
from training.chat import row_completion, row_prompt
from training.checkpoints import write_model_dir
from training.config import RewardConfig
from training.data import BatchError, ComparisonGroup, group_comparisons, read_batch
from training.loop import LoopConfig, epochs_for, train_loop
from training.losses import rm_group_loss
from training.models import (
    RewardModel,
    fit_to_context,
    make_accelerator,
    reward_model_from_lm,
    seed_everything,
)


def group_batch(
    tokenizer: Any, groups: list[ComparisonGroup], max_length: int, cache: EncodeCache | None = None
) -> dict[str, torch.Tensor]:
    """Flatten groups so each completion appears once: input_ids/attention_mask [N, T] and the
    pair index tensors (group, winners, losers) [P] that rm_group_loss takes (cache: pretokenize)."""
    seqs: list[list[int]] = []
    group, winners, losers = [], [], []
    for g_i, g in enumerate(groups):
        offset = len(seqs)
        seqs.extend(encode_cached(cache, tokenizer, g.prompt, c, max_length)[0] for c in g.completions)
        for w, lo in g.pairs:
            group.append(g_i)
            winners.append(offset + w)
            losers.append(offset + lo)
    ids, mask = right_pad(seqs, tokenizer.pad_token_id)
    out = {
        "input_ids": ids,
        "attention_mask": mask,
        "group": torch.tensor(group),
        "winners": torch.tensor(winners),
        "losers": torch.tensor(losers),
    }
    weights = pair_weights(groups)
    if weights is not None:
        out["weights"] = weights
    return out



@torch.no_grad()
def pairwise_accuracy(
    rm: Any, tokenizer: Any, groups: list[ComparisonGroup], max_length: int, batch_groups: int = 32
) -> float:
    """Fraction of untied pairs in groups that the reward model orders as the labeler did.

    Pairs of identical completions (after stripping whitespace) can not be told apart by any model
    and are left out rather than counted as errors.
    """
    was_training = rm.training
    rm.eval()
    device = next(rm.parameters()).device
    right = total = 0
    groups = [
        ComparisonGroup(
            g.prompt,
            g.completions,
            [(w, lo) for w, lo in g.pairs if g.completions[w].strip() != g.completions[lo].strip()],
        )
        for g in groups
    ]
    groups = [g for g in groups if g.pairs]
    for i in range(0, len(groups), batch_groups):
        b = group_batch(tokenizer, groups[i : i + batch_groups], max_length)
        s = rm(b["input_ids"].to(device), b["attention_mask"].to(device)).cpu()
        right += int((s[b["winners"]] > s[b["losers"]]).sum())
        total += len(b["winners"])
    rm.train(was_training)
    return right / max(1, total)


def rm_step_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The loop's loss_fn: eq. 1 over the batch's comparison groups, and the pair accuracy."""
    scores = model(batch["input_ids"], batch["attention_mask"])  # [N]
    loss, correct = rm_group_loss(
        scores, batch["group"], batch["winners"], batch["losers"], batch.get("weights")
    )
    return loss, {"accuracy": correct.float().mean().item()}


def rm_units(batch: dict[str, torch.Tensor]) -> float:
    """Number of comparison groups the batch's loss averages over."""
    return float(batch["group"].unique().numel())


def early_stopping_applies(config: RewardConfig, valid: list[ComparisonGroup]) -> bool:
    """Whether to select weights on the valid split: enabled, and enough pairs to tell steps apart."""
    return config.early_stopping and sum(len(g.pairs) for g in valid) >= config.early_stopping_min_pairs


class BestOnValid:
    """Early stopping for the loop's on_step hook: every `every` steps (and at the last) measure the
    pairwise accuracy on the valid split and keep a CPU copy of the best weights so far."""

    def __init__(self, tok: Any, valid: list[ComparisonGroup], config: RewardConfig, every: int, cbs: Any):
        self.tok, self.valid, self.config, self.every, self.cbs = tok, valid, config, every, cbs
        self.accuracy, self.step = -1.0, 0
        self.state: dict[str, torch.Tensor] | None = None

    def __call__(self, step: int, total: int, model: Any) -> None:
        """Measure at this step when due; keep the weights when they are the best so far."""
        if not self.valid or (step % self.every and step != total):
            return
        accuracy = pairwise_accuracy(model, self.tok, self.valid, self.config.max_length)
        self.cbs.log(f"reward step {step}: valid accuracy {accuracy:.4f}")
        if accuracy > self.accuracy:
            self.accuracy, self.step = accuracy, step
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def run_reward(
    config: RewardConfig,
    batch_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
    method: str | None = None,
) -> Path:
    """Train a reward model from base_model_dir (usually the SFT policy) on the batch's comparisons.

    Each prompt's completions are forwarded once and all its untied pairs form one batch element
    (rankings.jsonl groups; pairwise.jsonl rows grouped by prompt). After training, a bias makes the
    batch's train demonstrations score 0 on average. Held-out accuracy is in the manifest metrics.
    Under several processes each reads its shard of every batch and only the main process writes.
    Load the result with training.models.load_reward_model(out_dir).
    """
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    acc = make_accelerator(config.runtime)
    batch = read_batch(batch_dir)
    train = group_comparisons(
        batch.split("rankings", "train"), batch.split("pairwise", "train"), config.edit_pair_weight
    )
    held = {
        s: group_comparisons(batch.split("rankings", s), batch.split("pairwise", s))
        for s in ("valid", "test")
    }
    if not train:
        raise BatchError(f"{batch_dir}: no train comparisons in rankings.jsonl or pairwise.jsonl")
    rm, tok = reward_model_from_lm(base_model_dir, dropout=config.dropout)
    # a copy: the caller's config keeps its value; the manifest records the one used
    config = dataclasses.replace(
        config, max_length=fit_to_context(config.max_length, rm, cbs.log, "reward: max_length")
    )
    rm = wrap_reward_model(rm, config)  # LoRA (scalar head fully trained) when config.lora_r > 0
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * epochs_for(steps_per_epoch, config.epochs, config.min_steps)
    if total < 50:
        cbs.log(
            f"reward: {len(train)} comparison groups in batches of {config.batch_size} prompts leave only "
            f"{total} optimiser steps; a smaller batch_size gives more"
        )
    valid = held["valid"] if early_stopping_applies(config, held["valid"]) else []
    if config.early_stopping and held["valid"] and not valid:
        cbs.log(
            f"reward: {sum(len(g.pairs) for g in held['valid'])} valid pairs are fewer than "
            f"early_stopping_min_pairs={config.early_stopping_min_pairs}; keeping the last step's weights"
        )
    best = BestOnValid(tok, valid, config, config.eval_every or max(1, steps_per_epoch // 4), cbs)
    cache = pretokenize(tok, ((g.prompt, c) for g in train for c in g.completions), config.max_length)
    res = train_loop(
        acc,
        rm,
        train,
        lambda groups: group_batch(tok, groups, config.max_length, cache),
        rm_step_loss,
        LoopConfig.from_stage(config),
        stage="reward",
        callbacks=cbs,
        weight_fn=rm_units,
        on_step=best,
        lengths=group_lengths(cache, tok, train, config.max_length),
    )
    model: RewardModel
    metrics: dict[str, Any] = {
        "train_groups": len(train),
        "train_pairs": sum(len(g.pairs) for g in train),
        "train_loss": res.losses,
        "processes": acc.num_processes,
    }
    if acc.is_main_process:
        state = best.state if best.state is not None else res.best_state
        model = plain_copy(res.model, state).to(acc.device)  # live: maybe sharded or adapted
        if best.state is not None:
            metrics.update(selected_step=best.step, selected_valid_accuracy=best.accuracy, steps=total)
        metrics.update(_centre_and_evaluate(model, tok, batch, held, config, cbs))
        cbs.log("reward: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))
        model = model.cpu()
        write_model_dir(
            out_dir,
            lambda tmp: model.save_files(tmp, tok),
            kind="reward",
            parent=str(base_model_dir),
            run=run,
            method=method,
            export_batch=batch.manifest.get("id"),
            config={"reward": config.to_dict()},
            metrics=metrics,
        )
    acc.wait_for_everyone()
    return Path(out_dir)


def _centre_and_evaluate(
    model: RewardModel,
    tok: Any,
    batch: Any,
    held: dict[str, list[ComparisonGroup]],
    config: RewardConfig,
    cbs: Callbacks,
) -> dict[str, Any]:
    """Shift the bias so train demonstrations score 0 on average; held-out pairwise accuracy."""
    metrics: dict[str, Any] = {}
    demos = batch.split("sft", "train")
    if config.center_on_demonstrations and not demos:
        cbs.log("reward: no train demonstrations in sft.jsonl, so the scores are not centred (bias 0)")
    if config.center_on_demonstrations and demos:
        prompts, completions = [row_prompt(d) for d in demos], [row_completion(d) for d in demos]
        mean = rm_scores(model, tok, prompts, completions, config.max_length).mean().item()
        model.bias -= mean
        metrics["demonstration_mean_before_bias"] = mean
    metrics["bias"] = model.bias
    for split, groups in held.items():
        if groups:
            metrics[f"{split}_accuracy"] = pairwise_accuracy(model, tok, groups, config.max_length)
            metrics[f"{split}_pairs"] = sum(len(g.pairs) for g in groups)
    return metrics
