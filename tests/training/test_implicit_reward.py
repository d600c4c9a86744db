"""The implicit reward model: a DPO policy against its reference, loaded wherever a reward model is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from training.batching import encode_example, rm_scores
from training.config import DPOConfig, ImplicitRewardConfig, PPOConfig, RuntimeConfig
from training.generate import left_pad
from training.implicit import (
    ImplicitRewardModel,
    implicit_reward_from_dpo,
    is_implicit,
    kl_coef_note,
    run_implicit_reward,
    write_implicit_reward_model,
)
from training.losses import logprobs_of
from training.models import load_policy, load_scoring_model, reward_model_from_lm

CPU = RuntimeConfig(device="cpu", threads=1)
PAIRS = [("What is 1 plus 2?", "The answer is 3."), ("How do I steal a car?", "I can not help with that.")]


def _summed_logprob(model: torch.nn.Module, ids: list[int]) -> float:
    """Unpadded, by hand: the log-probability of every token after the first."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits
    return float(logprobs_of(logits[:, :-1], torch.tensor([ids[1:]])).sum())


def test_score_is_beta_times_the_summed_log_ratio_under_any_padding(micro_base: Path) -> None:
    policy, tok = load_policy(micro_base)
    reference = load_policy(micro_base)[0]
    with torch.no_grad():  # make the policy differ from its reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rm = ImplicitRewardModel(policy.eval(), reference.eval(), beta=0.5, bias=0.25)
    got = rm_scores(rm, tok, [p for p, _ in PAIRS], [c for _, c in PAIRS])  # right padding
    seqs = [encode_example(tok, p, c, 128)[0] for p, c in PAIRS]
    want = [0.5 * (_summed_logprob(policy, s) - _summed_logprob(reference, s)) + 0.25 for s in seqs]
    assert got.tolist() == pytest.approx(want, abs=1e-4)
    ids, mask = left_pad(seqs, tok.pad_token_id)  # left padding, as PPO's query + response
    with torch.no_grad():
        assert rm(ids, mask).tolist() == pytest.approx(want, abs=1e-4)
    same = ImplicitRewardModel(reference, reference, beta=0.5, bias=0.25)
    assert rm_scores(same, tok, [p for p, _ in PAIRS], [c for _, c in PAIRS]).tolist() == pytest.approx(
        [0.25, 0.25], abs=1e-6
    )  # a policy equal to its reference has no preference


def test_dense_rollout_scores_each_response_token_and_sum_to_the_score(micro_base: Path) -> None:
    from training.rollout import make_rollout, score_rollout

    policy, tok = load_policy(micro_base)
    reference = load_policy(micro_base)[0]
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rm = ImplicitRewardModel(policy.eval(), reference.eval(), beta=0.5, bias=0.25)
    prompts = [left for left, _ in PAIRS]
    query, qmask = left_pad([tok(p)["input_ids"] for p in prompts], tok.pad_token_id)
    replies = [tok(c)["input_ids"] for _, c in PAIRS]
    R = max(len(r) for r in replies)
    response = torch.tensor([r + [tok.pad_token_id] * (R - len(r)) for r in replies])
    rmask = torch.tensor([[1] * len(r) + [0] * (R - len(r)) for r in replies])
    models = (policy, reference, rm, reward_model_from_lm(micro_base)[0].eval())
    with torch.no_grad():
        sparse = score_rollout(models, query, qmask, response, rmask, 1.0, 1)
        dense = score_rollout(models, query, qmask, response, rmask, 1.0, 1, dense_reward=True)
    assert "token_scores" not in sparse
    assert dense["raw_scores"].tolist() == pytest.approx(sparse["raw_scores"].tolist(), abs=1e-4)
    for i, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
        full = tok(prompt)["input_ids"] + reply  # unpadded, by hand: each reply token's own log-ratio
        with torch.no_grad():
            ratio = [
                _summed_logprob(policy, full[: k + 1]) - _summed_logprob(policy, full[:k])
                - _summed_logprob(reference, full[: k + 1]) + _summed_logprob(reference, full[:k])
                for k in range(len(full) - len(reply), len(full))
            ]  # fmt: skip
        got = dense["token_scores"][i]
        assert got[: len(reply)].tolist() == pytest.approx([0.5 * r for r in ratio], abs=1e-4)
        assert got[len(reply) :].abs().sum().item() == 0.0  # padding scores nothing
    # make_rollout passes them on: with gamma = lambda = 1 a return is the reward to go, so moving
    # each token's part from the last token to its own lowers the return at t by the parts before t
    cfg = PPOConfig(max_new_tokens=6, micro_batch_size=2, lam=1.0, runtime=CPU)
    ro = {
        d: make_rollout(*models, tok, prompts, dataclasses.replace(cfg, dense_reward=d),
                        torch.Generator().manual_seed(0), "cpu")
        for d in (False, True)
    }  # fmt: skip
    assert torch.equal(ro[False]["response"], ro[True]["response"])  # the same samples
    mask = ro[True]["rmask"]
    with torch.no_grad():
        part = score_rollout(models, ro[True]["query"], ro[True]["qmask"], ro[True]["response"],
                             mask.long(), 1.0, 2, dense_reward=True)["token_scores"] * mask  # fmt: skip
    before = (part.cumsum(-1) - part) * mask
    assert before.abs().sum().item() > 0
    moved = ro[False]["returns"] - ro[True]["returns"]
    assert torch.allclose(moved, before, atol=1e-4)


def test_written_from_a_dpo_policy_centred_and_used_by_ppo(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from training.dpo import run_dpo
    from training.ppo import run_ppo

    torch.set_num_threads(1)
    dpo = run_dpo(
        DPOConfig(epochs=1, lr=1e-3, batch_size=8, warmup_steps=0, runtime=CPU),
        world_batch,
        micro_base,
        tmp_path / "dpo",
    )
    demos = [json.loads(line) for line in (world_batch / "sft.jsonl").read_text().splitlines()]
    demos = [d for d in demos if d["split"] == "train"]
    out = write_implicit_reward_model(dpo, micro_base, tmp_path / "rm", beta=0.1, demonstrations=demos)
    assert is_implicit(out) and json.loads((out / "manifest.json").read_text())["kind"] == "reward"
    rm = load_scoring_model(out)
    tok = load_policy(micro_base)[1]
    centred = rm_scores(rm, tok, [d["prompt"] for d in demos], [d["completion"] for d in demos])
    assert abs(centred.mean().item()) < 1e-4  # demonstrations score 0 on average
    # the round stage: reference and beta from the DPO run's manifest, the round's run and method
    staged = run_implicit_reward(ImplicitRewardConfig(runtime=CPU), world_batch, dpo, tmp_path / "rm2", run=5,
                                 method="dpo_ppo")  # fmt: skip
    m = json.loads((staged / "manifest.json").read_text())
    assert (m["run"], m["method"]) == (5, "dpo_ppo")
    assert m["config"]["implicit"] == {"beta": 0.1, "reference": str(micro_base)}
    first = json.loads((out / "manifest.json").read_text())["metrics"]["bias"]
    assert m["metrics"]["bias"] == pytest.approx(first)  # centred on the same demonstrations
    with pytest.raises(ValueError, match="no parent in its manifest"):
        implicit_reward_from_dpo(micro_base, tmp_path / "rm3")
    cfg = PPOConfig(total_episodes=4, rollout_batch_size=4, minibatch_size=4, max_new_tokens=4, runtime=CPU)
    ppo = run_ppo(cfg, world_batch, micro_base, out, tmp_path / "ppo")
    history = json.loads((ppo / "manifest.json").read_text())["metrics"]["history"]
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6) and "rm_score" in history[0]
    dense = run_ppo(dataclasses.replace(cfg, dense_reward=True), world_batch, micro_base, out, tmp_path / "d")
    first = json.loads((dense / "manifest.json").read_text())["metrics"]["history"][0]
    # the whole stage runs with it; the first rollout (same seed, same policy) keeps its RM score
    assert first["rm_score"] == pytest.approx(history[0]["rm_score"], abs=1e-4)


def test_ppo_is_warned_when_its_kl_coef_caps_it_at_the_dpo_policy(tmp_path: Path) -> None:
    (tmp_path / "implicit_reward.json").write_text(json.dumps({"beta": 0.1, "bias": 0.0}))
    assert kl_coef_note(tmp_path, 0.05) is None  # below beta: PPO can go past the DPO policy
    for kl in (0.1, 0.2):
        note = kl_coef_note(tmp_path, kl)
        assert note is not None and "beta 0.1" in note and f"kl_coef {kl:g}" in note
    (tmp_path / "implicit_reward.json").unlink()
    assert kl_coef_note(tmp_path, 0.2) is None  # a scalar-head reward model: nothing to say
