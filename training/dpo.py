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

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from training.adapters import plain_copy, wrap_policy
from training.batching import EncodeCache, pair_weights, pretokenize, sft_batch
from training.callbacks import Callbacks
from training.checkpoints import write_policy_dir
from training.config import DPOConfig
from training.data import BatchError, ComparisonGroup, group_comparisons, read_batch
from training.loop import LoopConfig, LoopResult, train_loop
from training.losses import chosen_nll, dpo_group_loss, response_logprobs
from training.models import fit_to_context, load_policy, make_accelerator, seed_everything

Refs = list[list[float]]  # per group, per completion: summed response log-prob under the reference


def pair_batch(
    tokenizer: Any, groups: list[ComparisonGroup], max_length: int, cache: EncodeCache | None = None
) -> dict[str, torch.Tensor]:
    """Each group's completions once: input_ids/attention_mask/labels [N, T] (sft_batch layout) and
    the pair indices group/winners/losers [P] that dpo_group_loss takes (cache: pretokenize)."""
    rows: list[dict[str, Any]] = []
    group, winners, losers = [], [], []
    for g_i, g in enumerate(groups):
        offset = len(rows)
        rows.extend({"prompt": g.prompt, "completion": c} for c in g.completions)
        for w, lo in g.pairs:
            group.append(g_i)
            winners.append(offset + w)
            losers.append(offset + lo)
    b = sft_batch(tokenizer, rows, max_length, cache)
    b.update(group=torch.tensor(group), winners=torch.tensor(winners), losers=torch.tensor(losers))
    weights = pair_weights(groups)
    if weights is not None:
        b["weights"] = weights
    return b


def as_pairs(groups: list[ComparisonGroup], refs: Refs) -> tuple[list[ComparisonGroup], Refs]:
    """The ungrouped variant: one element per pair, (chosen, rejected), with their reference log-probs."""
    out, out_refs = [], []
    for g, r in zip(groups, refs, strict=True):
        for w, lo in g.pairs:
            out.append(ComparisonGroup(g.prompt, [g.completions[w], g.completions[lo]], [(0, 1)], g.weight))
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
    dpo_loss, rc, rr = dpo_group_loss(
        logps,
        ref,
        b["group"],
        b["winners"],
        b["losers"],
        config.beta,
        config.label_smoothing,
        config.loss_type,
        b.get("weights"),
    )
    loss, metrics = dpo_loss, {}
    if config.rpo_alpha:
        n_tokens = (b["labels"][:, 1:] != -100).sum(-1)  # response tokens (response_logprobs' mask)
        nll = chosen_nll(logps, n_tokens, b["group"], b["winners"], b["losers"])
        loss, metrics = dpo_loss + config.rpo_alpha * nll, {"chosen_nll": nll.item()}
    return loss, {**pair_metrics(loss, logps.detach(), b, rc, rr), **metrics}


def train_dpo(
    model: Any,
    tokenizer: Any,
    units: list[ComparisonGroup],
    refs: Refs,
    config: DPOConfig,
    cbs: Callbacks,
    acc: Any,
    monitor: tuple[list[ComparisonGroup], Refs],
    select: bool = False,
) -> LoopResult:
    """DPO on the shared loop (training.loop): each element is a group (or a pair) with its reference
    log-probs; the mean is over prompts, so a step equals the one-process step at the same global batch.
    After each epoch (unless config.eval_every_epoch is off) the implicit-reward accuracy and margin on
    `monitor` (held-out groups) are recorded; with select, the epoch with the best accuracy there is
    kept (the later one on a tie), else the last."""
    examples = list(zip(units, refs, strict=True))
    cache = pretokenize(tokenizer, ((u.prompt, c) for u in units for c in u.completions), config.max_length)

    def make_batch(rows: list[tuple[ComparisonGroup, list[float]]]) -> dict[str, torch.Tensor]:
        b = pair_batch(tokenizer, [u for u, _ in rows], config.max_length, cache)
        b["ref"] = torch.tensor([x for _, r in rows for x in r])
        return b

    def loss_fn(live: Any, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = dpo_step(live, b, b["ref"], config)
        metrics.pop("loss")
        return loss, metrics

    def on_epoch_end(_epoch: int, live: Any) -> dict[str, float]:
        groups, group_refs = monitor
        if not groups:
            return {}
        with acc.autocast():
            scored = held_out_metrics(live, tokenizer, groups, group_refs, config)
        return {"reward_accuracy": scored["reward_accuracy"], "reward_margin": scored["reward_margin"]}

    return train_loop(
        acc,
        model,
        examples,
        make_batch,
        loss_fn,
        LoopConfig.from_stage(config),
        stage="dpo",
        callbacks=cbs,
        weight_fn=lambda b: float(torch.unique(b["group"]).numel()),  # prompts: the loss's mean is over them
        on_epoch_end=on_epoch_end if config.eval_every_epoch else None,
        select_key=(lambda m: m.get("reward_accuracy", -math.inf)) if select else None,
    )


def run_dpo(
    config: DPOConfig,
    batch_dir: str | Path,
    base_model_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
    method: str | None = None,
) -> Path:
    """Optimise the policy at base_model_dir (usually the SFT policy, also the reference) with DPO
    on the batch's train comparisons; write it to out_dir: the epoch with the best implicit-reward
    accuracy on the valid comparisons (the last when there are none). Held-out figures are in the manifest.

    Under several processes each takes its shard of every global batch (training.loop) and only the
    main process writes; with lora_r > 0 only adapters train and the written policy is merged."""
    cbs = Callbacks(callbacks)
    seed_everything(config.runtime.seed)
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
    acc = make_accelerator(config.runtime)
    model, tok = load_policy(base_model_dir, dropout=config.dropout)
    # a copy: the caller's config keeps its value; the manifest records the one used
    config = dataclasses.replace(
        config, max_length=fit_to_context(config.max_length, model, cbs.log, "dpo: max_length")
    )
    model = model.to(acc.device)
    with acc.autocast():  # the same precision as the training forward passes
        refs = sequence_logprobs(model, tok, train, config.max_length)  # the frozen reference, once
        held_refs = {s: sequence_logprobs(model, tok, g, config.max_length) for s, g in held.items() if g}
    units, unit_refs = (train, refs) if config.grouped else as_pairs(train, refs)
    monitor = (held["valid"], held_refs["valid"]) if held["valid"] else (train[:64], refs[:64])
    model = wrap_policy(model, config)  # LoRA when config.lora_r > 0 (the references are already computed)
    select = bool(held["valid"]) and config.eval_every_epoch  # keep the best epoch only on held-out pairs
    res = train_dpo(model, tok, units, unit_refs, config, cbs, acc, monitor, select)
    metrics: dict[str, Any] = {
        "train_groups": len(train),
        "train_pairs": sum(len(g.pairs) for g in train),
        "history": res.history,
        "train_loss": res.losses,
        "monitored_on": "valid" if held["valid"] else "train",
        "selected_epoch": res.best_epoch,
        "selected_by": "valid_reward_accuracy" if select else "last_epoch",
        "processes": acc.num_processes,
    }
    if acc.is_main_process:
        final = plain_copy(res.model, res.best_state)
        # held-out figures of the weights that are written: the live model holds the last epoch's
        scorer = res.model if res.best_epoch == len(res.history) - 1 else final.to(acc.device)
        with acc.autocast():
            for split, groups in held.items():
                scored = held_out_metrics(scorer, tok, groups, held_refs[split], config) if groups else {}
                metrics.update({f"{split}_{k}": v for k, v in scored.items()})
        final.cpu()
        shown = {k: v for k, v in metrics.items() if k not in ("history", "train_loss")}
        cbs.log("dpo: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        write_policy_dir(
            out_dir,
            final,
            tok,
            parent=base_model_dir,
            run=run,
            method=method,
            export_batch=batch.manifest.get("id"),
            config={"dpo": config.to_dict()},
            metrics=metrics,
            dropout=0.0,
        )
    acc.wait_for_everyone()
    return Path(out_dir)
