"""Supervised fine-tuning on demonstrations (InstructGPT §3.5, App. C.1)."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

import torch

from training.batching import rm_scores, sft_batch
from training.callbacks import Callbacks
from training.checkpoints import write_model_dir
from training.config import SamplingParams, SFTConfig
from training.data import read_batch
from training.losses import sft_loss
from training.models import load_policy, load_reward_model, make_accelerator, seed_everything, set_dropout


def cosine_lr_lambda(total_steps: int, min_ratio: float, warmup: int = 0) -> Any:
    """LR multiplier: linear warm-up, then cosine decay from 1 to min_ratio at total_steps."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


@torch.no_grad()
def eval_sft_loss(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], cfg: SFTConfig, device: Any
) -> float:
    """Mean response-token NLL on rows (model in eval mode)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), cfg.batch_size):
        b = {
            k: v.to(device)
            for k, v in sft_batch(tokenizer, rows[i : i + cfg.batch_size], cfg.max_length).items()
        }
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        total += sft_loss(logits, b["labels"]).item() * len(b["labels"])
        n += len(b["labels"])
    model.train()
    return total / max(1, n)


def eval_rm_score(model: Any, tokenizer: Any, rm: Any, prompts: list[str], cfg: SFTConfig) -> float:
    """Mean reward-model score of one sampled completion per validation prompt."""
    from training.generate import Sampler

    model.eval()
    params = SamplingParams(temperature=1.0, max_new_tokens=cfg.rm_eval_max_new_tokens, seed=cfg.runtime.seed)
    comps = Sampler(model=model, tokenizer=tokenizer, device=str(next(model.parameters()).device)).sample(
        prompts, 1, params
    )
    model.train()
    return rm_scores(rm, tokenizer, prompts, [c[0].text for c in comps], cfg.max_length).mean().item()


def run_sft(
    config: SFTConfig,
    batch_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    reward_model_dir: str | Path | None = None,
    run: str | int | None = None,
) -> Path:
    """Fine-tune base_model_dir on the batch's train demonstrations; write the selected checkpoint to out_dir.

    Loss on response tokens only; cosine decay to min_lr_ratio without warm-up; residual dropout.
    The epoch kept is the one with the best mean RM score on validation prompts when reward_model_dir
    is given (select_by auto/rm), else the lowest validation loss, else the last.
    """
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    acc = make_accelerator(config.runtime)
    batch = read_batch(batch_dir)
    train, valid = batch.split("sft", "train"), batch.split("sft", "valid")
    if not train:
        raise ValueError(f"{batch_dir}: no train demonstrations in sft.jsonl")
    model, tok = load_policy(base_model_dir, dropout=config.dropout)
    rm = load_reward_model(reward_model_dir).to(acc.device) if reward_model_dir else None
    select = config.select_by if config.select_by != "auto" else ("rm" if rm is not None else "loss")
    if select == "loss" and not valid:
        select = "last"
    valid_prompts = [r["prompt"] for r in (valid or train)][: config.rm_eval_prompts]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if total < 50:
        cbs.log(
            f"sft: {len(train)} demonstrations in batches of {config.batch_size} for {config.epochs} epochs "
            f"leave only {total} optimiser steps"
        )
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr_lambda(total, config.min_lr_ratio))
    model, opt = acc.prepare(model, opt)
    model.train()
    rng = random.Random(config.runtime.seed)
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-math.inf, -1, None)
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(config.epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for i in range(0, len(order), config.batch_size):
            cbs.check_stop()
            b = {
                k: v.to(acc.device)
                for k, v in sft_batch(
                    tok, [train[j] for j in order[i : i + config.batch_size]], config.max_length
                ).items()
            }
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = sft_loss(logits, b["labels"])
            acc.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            cbs.progress(
                "sft", step, total, {"loss": loss.item(), "lr": sched.get_last_lr()[0], "epoch": epoch}
            )
        ep: dict[str, float] = {"epoch": epoch}
        if valid:
            ep["valid_loss"] = eval_sft_loss(model, tok, valid, config, acc.device)
        if rm is not None and select == "rm":
            ep["valid_rm_score"] = eval_rm_score(acc.unwrap_model(model), tok, rm, valid_prompts, config)
        history.append(ep)
        cbs.log(f"sft epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in ep.items()))
        key = {
            "rm": ep.get("valid_rm_score", -math.inf),
            "loss": -ep.get("valid_loss", math.inf),
            "last": float(epoch),
        }[select]
        if key >= best[0]:
            state = {k: v.detach().cpu().clone() for k, v in acc.unwrap_model(model).state_dict().items()}
            best = (key, epoch, state)
    final = copy.deepcopy(acc.unwrap_model(model)).cpu()
    if best[2] is not None:
        final.load_state_dict(best[2])
    final.config.use_cache = True
    set_dropout(final.config, 0.0)  # the saved policy samples and is fine-tuned further without dropout
    metrics = {
        "selected_epoch": best[1],
        "selected_by": select,
        "history": history,
        "train_examples": len(train),
        "valid_examples": len(valid),
    }

    def write(tmp: Path) -> None:
        final.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return write_model_dir(
        out_dir,
        write,
        kind="policy",
        parent=str(base_model_dir),
        run=run,
        export_batch=batch.manifest.get("id"),
        config={"sft": config.to_dict(), "reward_model": str(reward_model_dir or "")},
        metrics=metrics,
    )
