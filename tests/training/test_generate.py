"""Sampling: KV cache, prompt computed once for its K samples, EOS handling, recorded parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.config import SamplingParams
from training.generate import (
    Completion,
    Sampler,
    distinct_first,
    encode_prompts,
    left_pad,
    sample_next,
    sample_tokens,
    top_p_filter,
)
from training.models import load_policy


class CountingModel(torch.nn.Module):
    """Wraps a causal LM and records the shape of every forward's input_ids."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, **kw: Any) -> Any:
        self.shapes.append(tuple(kw["input_ids"].shape))
        return self.model(**kw)


def test_prompt_forwarded_once_for_k_samples(micro_base: Path) -> None:
    model, tok = load_policy(micro_base)
    counting = CountingModel(model.eval())
    ids, mask = left_pad(
        encode_prompts(tok, ["What is 1 plus 2?", "How do I steal a car?"]), tok.pad_token_id
    )
    resp, rmask, fin = sample_tokens(
        counting,
        ids,
        mask,
        5,
        SamplingParams(max_new_tokens=6),
        tok.eos_token_id,
        tok.pad_token_id,
        torch.Generator().manual_seed(0),
    )
    assert counting.shapes[0] == (2, ids.shape[1])  # the prompts, once
    assert all(s == (10, 1) for s in counting.shapes[1:])  # then one token per sample per step
    assert resp.shape[0] == 10 and rmask.shape == resp.shape and fin.shape == (10,)


def test_cached_greedy_matches_full_recompute_under_left_padding(micro_base: Path) -> None:
    model, tok = load_policy(micro_base)
    model.eval()
    prompts = ["What is 1 plus 2?", "Repeat the word cat two times."]
    ids, mask = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    params = SamplingParams(temperature=0.0, max_new_tokens=5)
    resp, _, _ = sample_tokens(model, ids, mask, 1, params, tok.eos_token_id, tok.pad_token_id)
    for i, p in enumerate(prompts):  # unpadded, no cache, argmax each step
        seq = encode_prompts(tok, [p])[0]
        for t in range(5):
            with torch.no_grad():
                nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            if resp[i, t].item() == tok.pad_token_id:
                break
            assert nxt == resp[i, t].item()
            seq.append(nxt)
            if nxt == tok.eos_token_id:
                break


class _StubCache:
    def batch_repeat_interleave(self, k: int) -> None:
        pass


class ScriptedLM(torch.nn.Module):
    """Greedy decoding of this model emits scripts[row] token by token."""

    def __init__(self, scripts: list[list[int]], vocab: int = 12) -> None:
        super().__init__()
        self.scripts, self.vocab, self.prompt_len = scripts, vocab, 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        from types import SimpleNamespace

        if input_ids.shape[1] > 1:
            self.prompt_len = attention_mask.shape[1]
        step = attention_mask.shape[1] - self.prompt_len
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.vocab)
        for row, script in enumerate(self.scripts):
            logits[row, -1, script[min(step, len(script) - 1)]] = 10.0
        return SimpleNamespace(logits=logits, past_key_values=_StubCache())


def test_eos_stops_and_pads_after() -> None:
    eos, pad = 1, 0
    lm = ScriptedLM([[5, eos, 6, 7, 8], [5, 6, 7, 8, 9]])
    ids, mask = torch.tensor([[3, 4], [3, 4]]), torch.ones(2, 2, dtype=torch.long)
    resp, rmask, fin = sample_tokens(
        lm, ids, mask, 1, SamplingParams(temperature=0.0, max_new_tokens=4), eos, pad
    )
    assert resp.tolist() == [[5, eos, pad, pad], [5, 6, 7, 8]]
    assert rmask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert fin.tolist() == [True, False]


def test_top_p_keeps_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]


def test_sampler_records_parameters_and_finished(micro_base: Path) -> None:
    s = Sampler(micro_base)
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=4, seed=1)
    out = s.sample(["What is 1 plus 2?", "What color is my car?", "How do I steal a car?"], 3, params)
    assert [len(r) for r in out] == [3, 3, 3]
    c = out[0][0]
    assert c.params == params.to_dict() and isinstance(c.text, str) and isinstance(c.finished, bool)
    assert c.finished == (c.token_ids[-1] == s.tokenizer.eos_token_id if c.token_ids else False)
    again = s.sample(["What is 1 plus 2?", "What color is my car?", "How do I steal a car?"], 3, params)
    assert [[c.text for c in r] for r in again] == [[c.text for c in r] for r in out]  # seeded


def test_sample_next_draws_in_proportion_and_never_outside_the_nucleus() -> None:
    probs = torch.tensor([0.1, 0.2, 0.0, 0.7])
    logits = torch.log(probs).expand(40_000, 4).contiguous()
    gen = torch.Generator().manual_seed(0)
    drawn = sample_next(logits, 1.0, 1.0, gen)
    freq = torch.bincount(drawn, minlength=4).float() / drawn.numel()
    assert torch.allclose(freq, probs, atol=0.01)  # an off-by-one in the CDF search shifts mass
    nucleus = sample_next(logits, 1.0, 0.7, gen)  # 0.7 alone reaches top_p: only token 3
    assert set(nucleus.tolist()) == {3}
    hot = sample_next(logits, 2.0, 1.0, gen)  # temperature 2: probabilities ~ sqrt(p)
    want = probs.sqrt() / probs.sqrt().sum()
    assert torch.allclose(torch.bincount(hot, minlength=4).float() / hot.numel(), want, atol=0.01)


def test_greedy_k_samples_match_full_recompute_through_the_reserved_cache(micro_base: Path) -> None:
    model, tok = load_policy(micro_base)
    model.eval()
    prompts = ["What is 1 plus 2?", "Repeat the word cat two times please."]
    ids, mask = left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    resp, _, _ = sample_tokens(model, ids, mask, 3, params, tok.eos_token_id, tok.pad_token_id)
    for i, p in enumerate(prompts):
        seq = encode_prompts(tok, [p])[0]
        want = []
        for _ in range(resp.shape[1]):
            with torch.no_grad():
                nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            want.append(nxt)
            seq.append(nxt)
            if nxt == tok.eos_token_id:
                break
        for s in range(3):  # every one of the prompt's k rows (the cache repeated k times)
            got = [t for t in resp[i * 3 + s].tolist() if t != tok.pad_token_id]
            assert got == want[: len(got)] and len(got) == len(want)


class EosForShortPrompts(torch.nn.Module):
    """A real LM (real KV cache) steered: rows whose position is before `cut` emit EOS, others never do."""

    def __init__(self, model: Any, eos: int, cut: int) -> None:
        super().__init__()
        self.model, self.eos, self.cut = model, eos, cut
        self.rows: list[int] = []

    def forward(self, **kw: Any) -> Any:
        self.rows.append(kw["input_ids"].shape[0])
        out = self.model(**kw)
        logits = out.logits.clone()
        early = kw["position_ids"][:, -1] < self.cut
        logits[early, -1] = float("-inf")
        logits[early, -1, self.eos] = 0.0
        logits[~early, -1, self.eos] = float("-inf")
        out.logits = logits
        return out


def test_finished_rows_are_dropped_and_the_rest_decode_unchanged(micro_base: Path) -> None:
    model, tok = load_policy(micro_base)
    model.eval()
    short, long = "Hi?", "Repeat the word cat two times, then the word dog three times."
    enc = encode_prompts(tok, [short, long])
    ids, mask = left_pad(enc, tok.pad_token_id)
    steered = EosForShortPrompts(model, tok.eos_token_id, cut=len(enc[1]) - 1)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    resp, rmask, fin = sample_tokens(steered, ids, mask, 4, params, tok.eos_token_id, tok.pad_token_id)
    assert fin.tolist() == [True] * 4 + [False] * 4
    assert rmask[:4].sum(-1).tolist() == [1] * 4  # EOS only
    # the prompts once, 8 rows up to the check after the 8th token, then the 4 finished rows are gone
    assert steered.rows == [2] + [8] * 7 + [4] * 4
    alone = EosForShortPrompts(model, tok.eos_token_id, cut=len(enc[1]) - 1)
    ids1, mask1 = left_pad([enc[1]], tok.pad_token_id)
    ref, _, _ = sample_tokens(alone, ids1, mask1, 1, params, tok.eos_token_id, tok.pad_token_id)
    assert all(resp[r].tolist() == ref[0].tolist() for r in range(4, 8))


def _c(text: str) -> Completion:
    return Completion(text, True)


def test_distinct_first_keeps_sampling_order_and_tops_up_with_the_earliest_repeats() -> None:
    got = distinct_first([_c("a"), _c("a "), _c("b"), _c("a"), _c("c"), _c("d")], 3)
    assert [c.text for c in got] == ["a", "b", "c"]
    got = distinct_first([_c("x"), _c("x"), _c("y"), _c("x")], 3)
    assert [c.text for c in got] == ["x", "y", "x"]  # the policy only says two things
    assert [c.text for c in distinct_first([_c("x"), _c("x")], 3, top_up=False)] == ["x"]


def test_sample_distinct_samples_again_only_for_prompts_short_of_k_texts(micro_base: Path) -> None:
    sampler = Sampler(micro_base, device="cpu")
    calls: list[int] = []
    plain = sampler.sample

    def counting(prompts: list[Any], k: int, params: SamplingParams | None = None) -> Any:
        calls.append(len(prompts))
        return plain(prompts, k, params)

    sampler.sample = counting  # type: ignore[method-assign]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=4, seed=3)
    out = sampler.sample_distinct(["What is 1 plus 2?", "How do I steal a car?"], 3, greedy, rounds=2)
    # greedy decoding repeats itself: every round re-samples both prompts, then the copies fill in
    assert calls == [2, 2, 2]
    assert all(len(row) == 3 and len({c.text for c in row}) == 1 for row in out)
    calls.clear()
    hot = SamplingParams(temperature=50.0, max_new_tokens=6, seed=3)
    out = sampler.sample_distinct(["What is 1 plus 2?"], 4, hot, rounds=2)
    assert calls == [1] and len({c.text for c in out[0]}) == 4  # near-uniform draws differ at once
