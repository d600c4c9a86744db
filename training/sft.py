"""Supervised fine-tuning on demonstrations (InstructGPT §3.5, App. C.1)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.adapters import plain_copy, wrap_policy
from training.batching import pretokenize, rm_scores, sft_batch
from training.callbacks import Callbacks
from training.chat import Prompt, row_completion, row_prompt
from training.checkpoints import write_policy_dir
from training.config import SamplingParams, SFTConfig
from training.data import BatchError, read_batch
from training.loop import LoopConfig, cosine_lr_lambda, train_loop
from training.losses import sft_loss
from training.models import (
    fit_to_context,
    load_frozen_reward_model,
    load_policy,
    make_accelerator,
    seed_everything,
)

__all__ = ["cosine_lr_lambda", "eval_rm_score", "eval_sft_loss", "run_sft"]


def sft_units(batch: dict[str, torch.Tensor]) -> float:
    """Number of response tokens the batch's loss averages over (labels shifted by one, not -100)."""
    return float((batch["labels"][:, 1:] != -100).sum())


def sft_step_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The loop's loss_fn: mean response-token NLL of one batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sft_loss(logits, batch["labels"]), {}


@torch.no_grad()
def eval_sft_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], cfg: SFTConfig, acc: Any) -> float:
    """Mean response-token NLL on rows, each process taking its shard (model in eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0.0
    mine = rows[acc.process_index :: acc.num_processes]
    for i in range(0, len(mine), cfg.batch_size):
        b = {
            k: v.to(device)
            for k, v in sft_batch(tokenizer, mine[i : i + cfg.batch_size], cfg.max_length).items()
        }
        units = sft_units(b)
        total += sft_step_loss(model, b)[0].item() * units
        n += units
    sums = acc.reduce(torch.tensor([total, n], device=acc.device), "sum")
    return (sums[0] / sums[1].clamp(min=1)).item()


def eval_rm_score(
    model: Any, tokenizer: Any, rm: Any, prompts: list[Prompt], cfg: SFTConfig, acc: Any
) -> float:
    """Mean reward-model score of one sampled completion per validation prompt (prompts sharded by rank).

    The live training model is sampled as it is: never cast or moved (its optimizer holds its weights).
    """
    from training.generate import Sampler

    model.eval()
    mine = prompts[acc.process_index :: acc.num_processes]
    total = 0.0
    if mine:
        params = SamplingParams(
            temperature=1.0,
            max_new_tokens=cfg.rm_eval_max_new_tokens,
            seed=cfg.runtime.seed + acc.process_index,
        )
        with acc.autocast():
            comps = Sampler(model=model, tokenizer=tokenizer).sample(mine, 1, params)
            total = rm_scores(rm, tokenizer, mine, [c[0].text for c in comps], cfg.max_length).sum().item()
    model.train()
    sums = acc.reduce(torch.tensor([total, float(len(mine))], device=acc.device), "sum")
    return (sums[0] / sums[1].clamp(min=1)).item()


def run_sft(
    config: SFTConfig,
    batch_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    reward_model_dir: str | Path | None = None,
    run: str | int | None = None,
    method: str | None = None,
) -> Path:
    """Fine-tune base_model_dir on the batch's train demonstrations; write the selected checkpoint to out_dir.

    Loss on response tokens only; cosine decay to min_lr_ratio without warm-up; residual dropout.
    The epoch kept is the one with the best mean RM score on validation prompts when reward_model_dir
    is given (select_by auto/rm), else the lowest validation loss, else the last. Under several
    processes each reads its shard of every batch and only the main process writes out_dir.
    """
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    acc = make_accelerator(config.runtime)
    batch = read_batch(batch_dir)
    train, valid = batch.split("sft", "train"), batch.split("sft", "valid")
    if not train:
        raise BatchError(f"{batch_dir}: no train demonstrations in sft.jsonl")
    model, tok = load_policy(base_model_dir, dropout=config.dropout)
    # a copy: the caller's config keeps its value; the manifest records the one used
    config = dataclasses.replace(
        config, max_length=fit_to_context(config.max_length, model, cbs.log, "sft: max_length")
    )
    model = wrap_policy(model, config)  # LoRA when config.lora_r > 0
    rm = load_frozen_reward_model(reward_model_dir, acc) if reward_model_dir else None
    select = config.select_by if config.select_by != "auto" else ("rm" if rm is not None else "loss")
    if select == "loss" and not valid:
        select = "last"
    valid_prompts = [row_prompt(r) for r in (valid or train)][: config.rm_eval_prompts]
    total = math.ceil(len(train) / config.batch_size) * config.epochs
    if total < 50:
        cbs.log(
            f"sft: {len(train)} demonstrations in batches of {config.batch_size} for {config.epochs} epochs "
            f"leave only {total} optimiser steps"
        )

    on_epoch_end = _epoch_evaluator(acc, tok, config, valid, rm if select == "rm" else None, valid_prompts)
    keys = {
        "rm": lambda m: m.get("valid_rm_score", -math.inf),
        "loss": lambda m: -m.get("valid_loss", math.inf),
    }
    cache = pretokenize(tok, ((row_prompt(r), row_completion(r)) for r in train), config.max_length)
    res = train_loop(
        acc,
        model,
        train,
        lambda rows: sft_batch(tok, rows, config.max_length, cache),
        sft_step_loss,
        LoopConfig.from_stage(config),
        stage="sft",
        callbacks=cbs,
        weight_fn=sft_units,
        on_epoch_end=on_epoch_end,
        select_key=keys.get(select),
        lengths=[len(cache[(repr(row_prompt(r)), row_completion(r), config.max_length)][0]) for r in train]
        if config.group_by_length
        else None,
    )
    metrics = {
        "selected_epoch": res.best_epoch,
        "selected_by": select,
        "history": res.history,
        "train_loss": res.losses,
        "train_examples": len(train),
        "valid_examples": len(valid),
        "processes": acc.num_processes,
    }
    if acc.is_main_process:
        # a plain model holding the selected weights (the live one may be sharded or carry adapters)
        final = plain_copy(res.model, res.best_state)
        write_policy_dir(
            out_dir,
            final,
            tok,
            parent=base_model_dir,
            run=run,
            method=method,
            export_batch=batch.manifest.get("id"),
            config={"sft": config.to_dict(), "reward_model": str(reward_model_dir or "")},
            metrics=metrics,
            dropout=0.0,
        )
    acc.wait_for_everyone()
    return Path(out_dir)


def _epoch_evaluator(
    acc: Any, tok: Any, config: SFTConfig, valid: list[dict[str, Any]], rm: Any, prompts: list[Prompt]
) -> Callable[[int, Any], dict[str, float]]:
    """The loop's on_epoch_end: validation loss when there is a valid split, RM score when rm is given."""

    def on_epoch_end(_epoch: int, live: Any) -> dict[str, float]:
        ep: dict[str, float] = {}
        if valid:
            ep["valid_loss"] = eval_sft_loss(live, tok, valid, config, acc)
        if rm is not None:
            ep["valid_rm_score"] = eval_rm_score(live, tok, rm, prompts, config, acc)
        return ep

    return on_epoch_end
