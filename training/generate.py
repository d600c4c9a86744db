"""Sampling K completions per prompt with the KV cache, computing each prompt once for its K samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from training.chat import Prompt, encode_prompt, keep_last
from training.config import SamplingParams
from training.losses import position_ids_from_mask, truncate_after_eos


@dataclass
class Completion:
    """One sampled completion: its text, whether it hit EOS, and how it was sampled."""

    text: str
    finished: bool
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    token_ids: list[int] = field(default_factory=list)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask logits outside the smallest set whose probability reaches top_p: [N, V] -> [N, V]."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists: -> (ids [B, T], mask [B, T])."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, T - len(s) :] = torch.tensor(s)
            mask[i, T - len(s) :] = 1
    return ids, mask


@torch.no_grad()
def sample_tokens(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    k: int,
    params: SamplingParams,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample k continuations per prompt. prompt_ids/mask [P, T] (left-padded).

    The prompt batch is forwarded once; its KV cache is then repeated k times. Returns
    (responses [P*k, R] with PAD after EOS, response mask [P*k, R] (EOS included), finished [P*k]);
    rows are prompt-major (prompt i's samples are rows i*k .. i*k+k-1).
    """
    device = prompt_ids.device
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=position_ids_from_mask(prompt_mask),
        use_cache=True,
    )
    cache = out.past_key_values
    if k > 1:
        cache.batch_repeat_interleave(k)
    logits = out.logits[:, -1].repeat_interleave(k, dim=0)  # [N, V]
    mask = prompt_mask.repeat_interleave(k, dim=0)  # [N, T]
    N = logits.shape[0]
    done = torch.zeros(N, dtype=torch.bool, device=device)
    tokens = []
    for step in range(params.max_new_tokens):
        scaled = top_p_filter(logits.float() / max(params.temperature, 1e-6), params.top_p)
        if params.temperature <= 0:
            nxt = scaled.argmax(-1)
        else:
            nxt = torch.multinomial(F.softmax(scaled, -1), 1, generator=generator).squeeze(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos_id)
        if bool(done.all()) or step == params.max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(N, 1, dtype=mask.dtype, device=device)], dim=1)
        pos = mask.sum(-1, keepdim=True) - 1
        out = model(
            input_ids=nxt.unsqueeze(-1),
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1]
    responses = torch.stack(tokens, dim=1)  # [N, R]
    return truncate_after_eos(responses, eos_id, pad_id)


def decode_response(tokenizer: Any, ids: list[int], eos_id: int, pad_id: int) -> str:
    """Text of a response without EOS/PAD, leading space stripped."""
    return tokenizer.decode([t for t in ids if t not in (eos_id, pad_id)]).strip()


def encode_prompts(tokenizer: Any, prompts: list[Prompt], max_len: int | None = None) -> list[list[int]]:
    """Token ids of the prompts (strings or conversations) rendered with the chat template, keeping
    the last max_len tokens."""
    out = []
    for p in prompts:
        ids = encode_prompt(tokenizer, p)
        out.append(keep_last(tokenizer, ids, max_len) if max_len else ids)
    return out


class Sampler:
    """Keeps a policy loaded and samples K completions per prompt in batches (long-lived, for workers)."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        device: str | None = None,
        batch_prompts: int = 32,
    ) -> None:
        if model is None:
            from training.models import load_policy

            model, tokenizer = load_policy(str(model_dir))
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            # a model loaded here is ours to place; a model handed in (a live training model) is left as is
            model.to(self.device, dtype=torch.bfloat16 if self.device.type == "cuda" else None)
        else:
            self.device = next(model.parameters()).device
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = str(model_dir) if model_dir else None
        self.batch_prompts = batch_prompts

    def sample(
        self, prompts: list[Prompt], k: int = 1, params: SamplingParams | None = None
    ) -> list[list[Completion]]:
        """K completions for each prompt (a string or a conversation), in prompt order."""
        params = params or SamplingParams()
        gen = torch.Generator(device=self.device)
        if params.seed is not None:
            gen.manual_seed(params.seed)
        else:
            gen.seed()
        tok, eos, pad = self.tokenizer, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        out: list[list[Completion]] = []
        for i in range(0, len(prompts), self.batch_prompts):
            chunk = prompts[i : i + self.batch_prompts]
            ids, mask = left_pad(encode_prompts(tok, chunk), pad)
            resp, rmask, fin = sample_tokens(
                self.model, ids.to(self.device), mask.to(self.device), k, params, eos, pad, gen
            )
            for j in range(len(chunk)):
                row = []
                for s in range(j * k, j * k + k):
                    toks = resp[s][rmask[s].bool()].tolist()
                    row.append(
                        Completion(
                            decode_response(tok, toks, eos, pad),
                            bool(fin[s]),
                            params.to_dict(),
                            self.model_name,
                            toks,
                        )
                    )
                out.append(row)
        return out


def sample_completions(
    model_dir: str | Path, prompts: list[Prompt], k: int, params: SamplingParams | None = None
) -> list[list[Completion]]:
    """Load the policy at model_dir and sample k completions per prompt (see Sampler for repeated use)."""
    return Sampler(model_dir).sample(prompts, k, params)


@torch.no_grad()
def generate_per_completion(
    model: Any, tokenizer: Any, prompts: list[str], k: int, params: SamplingParams
) -> list[list[str]]:
    """The naive peer for benchmarks: one HF `generate` call per completion."""
    out = []
    for p in prompts:
        ids = torch.tensor([encode_prompts(tokenizer, [p])[0]])
        row = []
        for _ in range(k):
            g = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                max_new_tokens=params.max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            row.append(
                decode_response(
                    tokenizer, g[0, ids.shape[1] :].tolist(), tokenizer.eos_token_id, tokenizer.pad_token_id
                )
            )
        out.append(row)
    return out
