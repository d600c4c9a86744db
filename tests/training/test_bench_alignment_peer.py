"""The TRL peer run (bench.alignment_peer): TRL gets our PPO's reward on our PPO's prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.alignment_peer import peer_rows
from bench.peer_reward import ImplicitRewardFunction
from training.chat import encode_pair, encode_prompt
from training.generate import left_pad
from training.implicit import load_implicit_reward_model, write_implicit_reward_model
from training.models import load_policy

PAIRS = [("What is 1 plus 2?", "3"), ("How do I steal a car?", "I can not help with that."), ("Say hi.", "")]


@pytest.fixture(scope="module")
def implicit_rm(micro_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An implicit RM whose policy differs from its reference (the micro base, perturbed)."""
    root = tmp_path_factory.mktemp("peer")
    policy, tok = load_policy(micro_base)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    policy.save_pretrained(root / "dpo")
    tok.save_pretrained(root / "dpo")
    (root / "dpo" / "manifest.json").write_text(json.dumps({"kind": "policy"}))
    demos = [{"prompt": p, "completion": c or "hi"} for p, c in PAIRS]
    return Path(write_implicit_reward_model(root / "dpo", micro_base, root / "rm", 0.3, demos))


def test_the_peer_reward_is_our_ppo_score_with_the_missing_eos_penalty(implicit_rm: Path) -> None:
    ours = load_implicit_reward_model(implicit_rm)
    tok = load_policy(implicit_rm / "policy")[1]
    prompt_ids, completion_ids = zip(*(encode_pair(tok, p, c) for p, c in PAIRS), strict=True)
    # our PPO scores the left-padded query followed by the right-padded response
    query, qmask = left_pad(list(prompt_ids), tok.pad_token_id)
    width = max(len(c) for c in completion_ids)
    resp = torch.tensor([list(c) + [tok.pad_token_id] * (width - len(c)) for c in completion_ids])
    rmask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completion_ids])
    with torch.no_grad():
        want = ours(torch.cat([query, resp], 1), torch.cat([qmask, rmask], 1)).tolist()
    fn = ImplicitRewardFunction(implicit_rm, tok.eos_token_id, missing_eos_penalty=1.0, batch=2)
    got = fn(prompts=[], completions=[], completion_ids=list(completion_ids), prompt_ids=list(prompt_ids))
    assert all(c[-1] == tok.eos_token_id for c in completion_ids)
    assert got == pytest.approx(want, abs=1e-4)
    assert len(set(round(g, 4) for g in got)) == 3  # the perturbed policy tells the three apart
    cut = [list(c[:-1]) for c in completion_ids]  # the same responses, cut before their EOS
    unended = fn(prompts=[], completions=[], completion_ids=cut, prompt_ids=list(prompt_ids))
    plain = fn.score([list(p) + c for p, c in zip(prompt_ids, cut, strict=True)])
    assert unended == pytest.approx([s - 1.0 for s in plain], abs=1e-6)


def test_peer_rows_carry_our_prompt_ids_and_refuse_ids_that_disagree(
    world_batch: Path, micro_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = load_policy(micro_base)[1]
    rows = peer_rows(world_batch, tok)
    train = [json.loads(x) for x in (world_batch / "prompts.jsonl").read_text().splitlines() if x.strip()]
    assert len(rows) == sum(r["split"] == "train" for r in train) > 0
    first = rows[0]
    assert first["prompt"][0]["role"] == "user"
    assert first["prompt_ids"] == encode_prompt(tok, first["prompt"])
    # e.g. a tokenizer that adds BOS, which our encoding prepends and TRL's chat template does not
    monkeypatch.setattr(
        "bench.alignment_peer.encode_prompt", lambda t, m: [t.eos_token_id, *encode_prompt(t, m)]
    )
    with pytest.raises(ValueError, match="TRL would tokenize"):
        peer_rows(world_batch, tok)
