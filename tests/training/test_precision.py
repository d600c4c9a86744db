"""The GPU path, exercised on the CPU: device placement from the model, no in-place casts, same autocast."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from training.config import PPOConfig, RuntimeConfig
from training.evaluate import sequence_kl
from training.generate import Sampler
from training.models import load_policy, make_accelerator, reward_model_from_lm
from training.ppo import make_rollout


class MetaLM(nn.Module):
    """A language model living on the `meta` device: it checks that its inputs were moved there."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.weight = nn.Parameter(torch.empty(vocab, device="meta"))
        self.seen: list[torch.device] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> Any:
        self.seen += [input_ids.device, attention_mask.device]
        assert input_ids.device == self.weight.device, "inputs not on the model's device"
        B, T = input_ids.shape
        return SimpleNamespace(
            logits=torch.zeros(B, kw.get("logits_to_keep") or T, self.vocab, device="meta")
        )


def test_sequence_kl_moves_inputs_to_the_models_device(micro_base: Path) -> None:
    _, tok = load_policy(micro_base)
    policy, ref = MetaLM(len(tok)), MetaLM(len(tok))
    with pytest.raises((NotImplementedError, RuntimeError)):  # .item() of a meta tensor: the forwards ran
        sequence_kl(policy, ref, tok, ["What is 1 plus 2?", "Hi"], [[5, 6], [7]])
    assert policy.seen and ref.seen and all(d.type == "meta" for d in policy.seen + ref.seen)


def test_sampler_never_casts_or_moves_a_live_model(micro_base: Path) -> None:
    model, tok = load_policy(micro_base)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.tensor([[5, 6, 7]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    state = {k: v.clone() for k, v in opt.state[next(iter(model.parameters()))].items()}
    # a training model handed to a sampler is sampled where it is, as it is (here: asked for a GPU)
    s = Sampler(model=model, tokenizer=tok, device="cuda")
    s.sample(["What is 1 plus 2?"], 2)
    assert s.device == torch.device("cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    p0 = next(iter(model.parameters()))
    assert opt.state[p0]["exp_avg"].dtype == torch.float32 and p0 in opt.state
    assert all(torch.equal(state[k], opt.state[p0][k]) for k in state)


def test_kl_is_exactly_zero_at_step_zero_under_autocast(micro_base: Path) -> None:
    acc = make_accelerator(RuntimeConfig(device="cpu", mixed_precision="bf16"))
    policy, tok = load_policy(micro_base, dropout=0.0)
    ref = copy.deepcopy(policy)
    rm, _ = reward_model_from_lm(micro_base)
    value = copy.deepcopy(rm)
    prepared = acc.prepare(policy)  # the policy's forward now runs under bf16 autocast
    cfg = PPOConfig(max_new_tokens=6, temperature=0.7)
    prompts = ["What is 1 plus 2?", "How do I steal a car?", "Hi"]
    ro = make_rollout(
        acc.unwrap_model(prepared),
        ref,
        rm,
        value,
        tok,
        prompts,
        cfg,
        torch.Generator().manual_seed(0),
        "cpu",
        acc.autocast,
    )
    assert torch.equal(ro["kl"], torch.zeros_like(ro["kl"]))


def test_ppo_under_bf16_autocast_starts_at_zero_kl(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from training.config import RewardConfig
    from training.ppo import run_ppo
    from training.reward import run_reward

    rt = RuntimeConfig(device="cpu", mixed_precision="bf16")
    rm = run_reward(RewardConfig(batch_size=16, runtime=rt), world_batch, micro_base, tmp_path / "rm")
    cfg = PPOConfig(total_episodes=4, rollout_batch_size=4, minibatch_size=2, max_new_tokens=4, runtime=rt)
    out = run_ppo(cfg, world_batch, micro_base, rm, tmp_path / "ppo")
    hist = json.loads((out / "manifest.json").read_text())["metrics"]["history"]
    assert hist[0]["kl"] == 0.0


def test_evaluate_against_itself_has_zero_kl(micro_base: Path) -> None:
    from training.config import SamplingParams
    from training.evaluate import evaluate_policy

    params = SamplingParams(max_new_tokens=4, seed=0)
    res = evaluate_policy(micro_base, ["What is 1 plus 2?", "Hi"], reference_dir=micro_base, params=params)
    assert res["metrics"]["kl_vs_reference"] == 0.0
