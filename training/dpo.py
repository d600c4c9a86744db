"""Direct preference optimisation on the export batch's comparisons (Rafailov et al. 2023).

Pairs: each untied pair of every K-way ranking once (tied pairs dropped, as for the reward
model), plus the pairwise rows grouped by prompt (training.data.group_comparisons).
grouped=True (default): a batch element is one prompt's group; each of its completions is
forwarded once and the group's C(K,2)-minus-ties pairs are formed from those K log-probs; the
loss is the mean over the prompt's pairs, then over prompts (InstructGPT's normalisation for the
RM, which keeps a K = 9 ranking from counting 36 times). grouped=False: every pair is its own
element, chosen and rejected forwarded per pair, as TRL's DPOTrainer does.
The reference is the starting policy (the SFT model): its log-probs are computed in one pass
before training and stored per completion, so no second model is kept in memory.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch

from training.batching import sft_batch
from training.callbacks import Callbacks
from training.checkpoints import write_model_dir
from training.config import DPOConfig
from training.data import ComparisonGroup, group_comparisons, read_batch
from training.losses import dpo_group_loss, response_logprobs
from training.models import load_policy, make_accelerator, seed_everything, set_dropout
from training.sft import cosine_lr_lambda

Refs = list[list[float]]  # per group, per completion: summed response log-prob under the reference


def pair_batch(tokenizer: Any, groups: list[ComparisonGroup], max_length: int) -> dict[str, torch.Tensor]:
    """Each group's completions once: input_ids/attention_mask/labels [N, T] (sft_batch layout) and
    the pair indices group/winners/losers [P] that dpo_group_loss takes."""
    rows: list[dict[str, Any]] = []
    group, winners, losers = [], [], []
    for g_i, g in enumerate(groups):
        offset = len(rows)
        rows.extend({"prompt": g.prompt, "completion": c} for c in g.completions)
        for w, lo in g.pairs:
            group.append(g_i)
            winners.append(offset + w)
            losers.append(offset + lo)
    b = sft_batch(tokenizer, rows, max_length)
    b.update(group=torch.tensor(group), winners=torch.tensor(winners), losers=torch.tensor(losers))
    return b


def as_pairs(groups: list[ComparisonGroup], refs: Refs) -> tuple[list[ComparisonGroup], Refs]:
    """The ungrouped variant: one element per pair, (chosen, rejected), with their reference log-probs."""
    out, out_refs = [], []
    for g, r in zip(groups, refs, strict=True):
        for w, lo in g.pairs:
            out.append(ComparisonGroup(g.prompt, [g.completions[w], g.completions[lo]], [(0, 1)]))
            out_refs.append([r[w], r[lo]])
    return out, out_refs


@torch.no_grad()
def sequence_logprobs(
    model: Any, tokenizer: Any, groups: list[ComparisonGroup], max_length: int, batch_groups: int = 16
) -> Refs:
    """Summed response log-prob of every completion of every group, in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: Refs = []
    for i in range(0, len(groups), batch_groups):
        chunk = groups[i : i + batch_groups]
        b = pair_batch(tokenizer, chunk, max_length)
        logits = model(
            input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device)
        ).logits
        flat = response_logprobs(logits, b["labels"].to(device)).float().cpu().tolist()
        for g in chunk:
            out.append(flat[: len(g.completions)])
            flat = flat[len(g.completions) :]
    model.train(was_training)
    return out


def pair_metrics(
    loss: torch.Tensor, logps: torch.Tensor, b: dict[str, torch.Tensor], rc: Any, rr: Any
) -> dict[str, float]:
    """What the run page charts per step: loss, reward accuracy and margin, rewards, log-probs."""
    return {
        "loss": loss.item(),
        "reward_accuracy": (rc > rr).float().mean().item(),
        "reward_margin": (rc - rr).mean().item(),
        "chosen_reward": rc.mean().item(),
        "rejected_reward": rr.mean().item(),
        "chosen_logp": logps[b["winners"]].mean().item(),
        "rejected_logp": logps[b["losers"]].mean().item(),
        "pairs": float(len(b["winners"])),
    }


def held_out_metrics(
    model: Any, tokenizer: Any, groups: list[ComparisonGroup], refs: Refs, cfg: DPOConfig
) -> dict[str, float]:
    """Implicit-reward accuracy and margin of the trained policy on held-out comparisons."""
    logps = sequence_logprobs(model, tokenizer, groups, cfg.max_length)
    right = total = 0
    margin = 0.0
    for g, lp, ref in zip(groups, logps, refs, strict=True):
        for w, lo in g.pairs:
            m = cfg.beta * ((lp[w] - ref[w]) - (lp[lo] - ref[lo]))
            right, total, margin = right + (m > 0), total + 1, margin + m
    return {"reward_accuracy": right / max(1, total), "reward_margin": margin / max(1, total), "pairs": total}


def dpo_step(
    model: Any, b: dict[str, torch.Tensor], ref: torch.Tensor, config: DPOConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward pass over a batch of groups: the loss to back-propagate and the step's metrics."""
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    logps = response_logprobs(logits, b["labels"])  # [N]
    loss, rc, rr = dpo_group_loss(
        logps,
        ref,
        b["group"],
        b["winners"],
        b["losers"],
        config.beta,
        config.label_smoothing,
        config.loss_type,
    )
    return loss, pair_metrics(loss, logps.detach(), b, rc, rr)


def train_dpo(
    model: Any,
    tokenizer: Any,
    units: list[ComparisonGroup],
    refs: Refs,
    config: DPOConfig,
    cbs: Callbacks,
    acc: Any,
) -> tuple[Any, list[dict[str, float]]]:
    """The optimiser/schedule/epoch loop; returns the trained (unwrapped) model and the per-epoch
    means of the step metrics. Kept in one function so that it can move onto a shared loop skeleton."""
    total = math.ceil(len(units) / config.batch_size) * config.epochs
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_lr_lambda(total, config.min_lr_ratio, warmup=config.warmup_steps)
    )
    model, opt = acc.prepare(model, opt)
    model.train()
    rng = random.Random(config.runtime.seed)
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(config.epochs):
        order = list(range(len(units)))
        rng.shuffle(order)
        sums: dict[str, float] = {}
        for i in range(0, len(order), config.batch_size):
            cbs.check_stop()
            idx = order[i : i + config.batch_size]
            batch = pair_batch(tokenizer, [units[j] for j in idx], config.max_length)
            ref = torch.tensor([x for j in idx for x in refs[j]])
            loss, metrics = dpo_step(
                model, {k: v.to(acc.device) for k, v in batch.items()}, ref.to(acc.device), config
            )
            acc.backward(loss)
            if config.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            cbs.progress("dpo", step, total, {**metrics, "lr": sched.get_last_lr()[0], "epoch": epoch})
        n = max(1, math.ceil(len(order) / config.batch_size))
        history.append({"epoch": epoch, **{k: v / n for k, v in sums.items()}})
        cbs.log(f"dpo epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in history[-1].items()))
    return acc.unwrap_model(model), history


def run_dpo(
    config: DPOConfig,
    batch_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
) -> Path:
    """Optimise the policy at base_model_dir (usually the SFT policy, also the reference) with DPO
    on the batch's train comparisons; write it to out_dir. Held-out reward accuracy is in the manifest."""
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
    batch = read_batch(batch_dir)
    train = group_comparisons(batch.split("rankings", "train"), batch.split("pairwise", "train"))
    held = {
        s: group_comparisons(batch.split("rankings", s), batch.split("pairwise", s))
        for s in ("valid", "test")
    }
    if not train:
        raise ValueError(f"{batch_dir}: no train comparisons in rankings.jsonl or pairwise.jsonl")
    acc = make_accelerator(config.runtime)
    model, tok = load_policy(base_model_dir, dropout=config.dropout)
    model = model.to(acc.device)
    with acc.autocast():  # the same precision as the training forward passes
        refs = sequence_logprobs(model, tok, train, config.max_length)  # the frozen reference, once
        held_refs = {s: sequence_logprobs(model, tok, g, config.max_length) for s, g in held.items() if g}
    units, unit_refs = (train, refs) if config.grouped else as_pairs(train, refs)
    final, history = train_dpo(model, tok, units, unit_refs, config, cbs, acc)
    metrics: dict[str, Any] = {
        "train_groups": len(train),
        "train_pairs": sum(len(g.pairs) for g in train),
        "history": history,
        **{k: v for k, v in history[-1].items() if k != "epoch"},
    }
    with acc.autocast():
        for split, groups in held.items():
            scored = held_out_metrics(final, tok, groups, held_refs[split], config) if groups else {}
            metrics.update({f"{split}_{k}": v for k, v in scored.items()})
    cbs.log("dpo: " + ", ".join(f"{k}={v}" for k, v in metrics.items() if k != "history"))
    return _write_policy(
        final.cpu(), tok, out_dir, base_model_dir, run, batch.manifest.get("id"), config, metrics
    )


def _write_policy(
    model: Any,
    tok: Any,
    out_dir: str | Path,
    parent: str | Path,
    run: str | int | None,
    export_batch: Any,
    config: DPOConfig,
    metrics: dict[str, Any],
) -> Path:
    model.config.use_cache = True
    set_dropout(model.config, 0.0)  # the saved policy samples and is fine-tuned further without dropout

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return write_model_dir(
        out_dir,
        write,
        kind="policy",
        parent=str(parent),
        run=run,
        export_batch=export_batch,
        config={"dpo": config.to_dict()},
        metrics=metrics,
    )
