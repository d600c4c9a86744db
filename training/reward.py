"""Reward model on grouped comparisons (InstructGPT §3.5, App. C.2, eq. 1)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch

from training.batching import encode_example, right_pad, rm_scores
from training.callbacks import Callbacks
from training.checkpoints import write_model_dir
from training.config import RewardConfig
from training.data import ComparisonGroup, group_comparisons, read_batch
from training.losses import rm_group_loss
from training.models import make_accelerator, reward_model_from_lm, seed_everything
from training.sft import cosine_lr_lambda


def group_batch(tokenizer: Any, groups: list[ComparisonGroup], max_length: int) -> dict[str, torch.Tensor]:
    """Flatten groups so each completion appears once: input_ids/attention_mask [N, T] and the
    pair index tensors (group, winners, losers) [P] that rm_group_loss takes."""
    seqs: list[list[int]] = []
    group, winners, losers = [], [], []
    for g_i, g in enumerate(groups):
        offset = len(seqs)
        seqs.extend(encode_example(tokenizer, g.prompt, c, max_length)[0] for c in g.completions)
        for w, lo in g.pairs:
            group.append(g_i)
            winners.append(offset + w)
            losers.append(offset + lo)
    ids, mask = right_pad(seqs, tokenizer.pad_token_id)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "group": torch.tensor(group),
        "winners": torch.tensor(winners),
        "losers": torch.tensor(losers),
    }


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


def _keep_best(
    model: Any,
    tok: Any,
    valid: list[ComparisonGroup],
    config: RewardConfig,
    step: int,
    best: tuple[float, int, dict[str, torch.Tensor] | None],
    cbs: Callbacks,
) -> tuple[float, int, dict[str, torch.Tensor] | None]:
    """Early stopping: measure validation accuracy and keep the weights of the best step so far."""
    accuracy = pairwise_accuracy(model, tok, valid, config.max_length)
    cbs.log(f"reward step {step}: valid accuracy {accuracy:.4f}")
    if accuracy <= best[0]:
        return best
    return accuracy, step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def run_reward(
    config: RewardConfig,
    batch_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
) -> Path:
    """Train a reward model from base_model_dir (usually the SFT policy) on the batch's comparisons.

    Each prompt's completions are forwarded once and all its untied pairs form one batch element
    (rankings.jsonl groups; pairwise.jsonl rows grouped by prompt). After training, a bias makes the
    batch's train demonstrations score 0 on average. Held-out accuracy is in the manifest metrics.
    Load the result with training.models.load_reward_model(out_dir).
    """
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    acc = make_accelerator(config.runtime)
    batch = read_batch(batch_dir)
    train = group_comparisons(batch.split("rankings", "train"), batch.split("pairwise", "train"))
    held = {
        s: group_comparisons(batch.split("rankings", s), batch.split("pairwise", s))
        for s in ("valid", "test")
    }
    if not train:
        raise ValueError(f"{batch_dir}: no train comparisons in rankings.jsonl or pairwise.jsonl")
    rm, tok = reward_model_from_lm(base_model_dir, dropout=config.dropout)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if total < 50:
        cbs.log(
            f"reward: {len(train)} comparison groups in batches of {config.batch_size} prompts leave only "
            f"{total} optimiser steps; a smaller batch_size gives more"
        )
    valid = held["valid"] if config.early_stopping else []
    every = config.eval_every or max(1, steps_per_epoch // 4)
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-1.0, 0, None)
    opt = torch.optim.AdamW(
        rm.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr_lambda(total, config.min_lr_ratio))
    rm, opt = acc.prepare(rm, opt)
    rm.train()
    rng = random.Random(config.runtime.seed)
    step = 0
    for _epoch in range(config.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for i in range(0, len(order), config.batch_size):
            cbs.check_stop()
            b = group_batch(tok, [train[j] for j in order[i : i + config.batch_size]], config.max_length)
            b = {k: v.to(acc.device) for k, v in b.items()}
            scores = rm(b["input_ids"], b["attention_mask"])  # [N]
            loss, correct = rm_group_loss(scores, b["group"], b["winners"], b["losers"])
            acc.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            cbs.progress(
                "reward",
                step,
                total,
                {"loss": loss.item(), "accuracy": correct.float().mean().item(), "pairs": len(b["winners"])},
            )
            if valid and (step % every == 0 or step == total):
                best = _keep_best(acc.unwrap_model(rm), tok, valid, config, step, best, cbs)
    model = acc.unwrap_model(rm)
    metrics: dict[str, Any] = {"train_groups": len(train), "train_pairs": sum(len(g.pairs) for g in train)}
    if best[2] is not None:
        model.load_state_dict(best[2])
        metrics.update({"selected_step": best[1], "selected_valid_accuracy": best[0], "steps": total})
    demos = batch.split("sft", "train")
    if config.center_on_demonstrations and not demos:
        cbs.log("reward: no train demonstrations in sft.jsonl, so the scores are not centred (bias 0)")
    if config.center_on_demonstrations and demos:
        mean = (
            rm_scores(
                model, tok, [d["prompt"] for d in demos], [d["completion"] for d in demos], config.max_length
            )
            .mean()
            .item()
        )
        model.bias -= mean
        metrics["demonstration_mean_before_bias"] = mean
    metrics["bias"] = model.bias
    for split, groups in held.items():
        if groups:
            metrics[f"{split}_accuracy"] = pairwise_accuracy(model, tok, groups, config.max_length)
            metrics[f"{split}_pairs"] = sum(len(g.pairs) for g in groups)
    cbs.log("reward: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))
    model = model.cpu()

    return write_model_dir(
        out_dir,
        lambda tmp: model.save_files(tmp, tok),
        kind="reward",
        parent=str(base_model_dir),
        run=run,
        export_batch=batch.manifest.get("id"),
        config={"reward": config.to_dict()},
        metrics=metrics,
    )
