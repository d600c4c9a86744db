"""Tokenising (prompt or conversation, completion) records into padded tensors; reward-model scoring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from training.chat import Prompt, encode_pair, keep_last, row_completion, row_prompt


def encode_example(
    tokenizer: Any, prompt: Prompt, completion: str, max_length: int, add_eos: bool = True
) -> tuple[list[int], int]:
    """Token ids of the prompt rendered with the chat template + the completion + EOS, and the
    prompt's length in tokens (training.chat.encode_pair: BOS, if any, only at position 0).

    An over-long prompt keeps its last tokens (BOS kept first) and the completion is cut to fit max_length.
    """
    p, c = encode_pair(tokenizer, prompt, completion)
    if not add_eos and c and c[-1] == tokenizer.eos_token_id:
        c = c[:-1]
    if len(p) + len(c) > max_length:
        p = keep_last(tokenizer, p, max(1, max_length // 2))
    c = c[: max_length - len(p)]
    return p + c, len(p)


EncodeCache = dict[tuple[str, str, int], tuple[list[int], int]]


def encode_cached(
    cache: EncodeCache | None, tokenizer: Any, prompt: Prompt, completion: str, max_length: int
) -> tuple[list[int], int]:
    """encode_example, memoised in `cache` (one dict per training run: each example is tokenised once)."""
    if cache is None:
        return encode_example(tokenizer, prompt, completion, max_length)
    key = (repr(prompt), completion, max_length)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = encode_example(tokenizer, prompt, completion, max_length)
    return hit


def pretokenize(tokenizer: Any, pairs: Any, max_length: int, cache: EncodeCache | None = None) -> EncodeCache:
    """Tokenise every (prompt, completion) once, before training; the cache the batch builders take."""
    cache = {} if cache is None else cache
    for prompt, completion in pairs:
        encode_cached(cache, tokenizer, prompt, completion, max_length)
    return cache


def group_lengths(cache: EncodeCache, tokenizer: Any, groups: Any, max_length: int) -> list[int]:
    """Tokens of each comparison group's longest (prompt + completion): what a batch of groups pads
    to, for the loop's length-grouped batches (training.loop.epoch_batches)."""
    return [
        max(len(encode_cached(cache, tokenizer, g.prompt, c, max_length)[0]) for c in g.completions)
        for g in groups
    ]


def right_pad(
    seqs: list[list[int]], pad_id: int, fill: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists: -> (ids [B, T], mask [B, T]); pads are `fill` (default pad_id)."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id if fill is None else fill, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def sft_batch(
    tokenizer: Any, rows: list[dict[str, Any]], max_length: int, cache: EncodeCache | None = None
) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and labels (-100 on prompt and padding) for SFT rows (cache: pretokenize)."""
    seqs, labels = [], []
    for r in rows:
        ids, n_prompt = encode_cached(cache, tokenizer, row_prompt(r), row_completion(r), max_length)
        seqs.append(ids)
        labels.append([-100] * n_prompt + ids[n_prompt:])
    input_ids, mask = right_pad(seqs, tokenizer.pad_token_id)
    lab, _ = right_pad(labels, tokenizer.pad_token_id, fill=-100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": lab}


@torch.no_grad()
def rm_scores(
    rm: Any,
    tokenizer: Any,
    prompts: list[Prompt],
    completions: list[str],
    max_length: int = 128,
    batch_size: int = 64,
) -> torch.Tensor:
    """Reward-model score of each (prompt, completion): [N] (bias included); sequences are cut to
    max_length or the model's context window, whichever is shorter."""
    from training.models import fit_to_context

    max_length = fit_to_context(max_length, rm)
    was_training = rm.training
    rm.eval()
    device = next(rm.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        seqs = [
            encode_example(tokenizer, p, c, max_length)[0]
            for p, c in zip(prompts[i : i + batch_size], completions[i : i + batch_size], strict=True)
        ]
        ids, mask = right_pad(seqs, tokenizer.pad_token_id)
        out.append(rm(ids.to(device), mask.to(device)).float().cpu())
    rm.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def pair_weights(groups: Sequence[Any]) -> torch.Tensor | None:
    """Each pair's weight [P] in the batch's pair order (groups' `weight`), or None when all weigh 1."""
    if all(getattr(g, "weight", 1.0) == 1.0 for g in groups):
        return None
    return torch.tensor([float(g.weight) for g in groups for _ in g.pairs], dtype=torch.float32)
