"""PPO invariants: KL exactly 0 at step 0, the RM score at the right token under left padding, EOS penalty."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from training.config import PPOConfig
from training.models import load_policy, reward_model_from_lm
from training.ppo import make_rollout


def _setup(micro_base: Path) -> tuple:
    policy, tok = load_policy(micro_base, dropout=0.0)
    ref = copy.deepcopy(policy)
    rm, _ = reward_model_from_lm(micro_base)
    value = copy.deepcopy(rm)
    return policy, ref, rm, value, tok


def test_kl_exactly_zero_at_step_zero(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    prompts = ["What is 1 plus 2?", "How do I steal a car?", "Repeat the word cat three times.", "Hi"]
    cfg = PPOConfig(max_new_tokens=8, temperature=0.7)
    ro = make_rollout(policy, ref, rm, value, tok, prompts, cfg, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(ro["kl"], torch.zeros_like(ro["kl"]))


def test_rm_score_read_at_last_real_response_token_under_left_padding(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    prompts = ["What is 1 plus 2?", "What is the capital of Norland? Tell me please, it is important."]
    cfg = PPOConfig(max_new_tokens=6, missing_eos_penalty=0.0)
    ro = make_rollout(policy, ref, rm, value, tok, prompts, cfg, torch.Generator().manual_seed(1), "cpu")
    for i in range(2):  # the same prompt + response without any padding scores the same
        q = ro["query"][i][ro["qmask"][i].bool()]
        r = ro["response"][i][ro["rmask"][i].bool()]
        ids = torch.cat([q, r]).unsqueeze(0)
        alone = rm(ids, torch.ones_like(ids)).item()
        assert abs(alone - ro["raw_scores"][i].item()) < 1e-4


def test_unfinished_responses_are_penalised(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    cfg = PPOConfig(max_new_tokens=2, missing_eos_penalty=3.0)
    ro = make_rollout(
        policy, ref, rm, value, tok, ["What is 1 plus 2?"] * 4, cfg, torch.Generator().manual_seed(2), "cpu"
    )
    expected = ro["raw_scores"] - 3.0 * (~ro["finished"]).float()
    assert torch.allclose(ro["scores"], expected)
    # the score sits on the last real response token of the per-token rewards
    last = ro["rmask"].sum(-1).long() - 1
    assert torch.allclose(ro["advantages"].new_tensor([1.0]), torch.tensor([1.0]))
    assert (last >= 0).all()


def test_leave_one_out_advantages_on_a_hand_made_group() -> None:
    from training.losses import leave_one_out_advantages

    # two prompts, k = 3 responses each; returns 1, 2, 6 (the first group) and 0, 0, 3
    rewards = torch.tensor([[1.0, 0.0], [0.5, 1.5], [6.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 2.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    adv = leave_one_out_advantages(rewards, mask, 3)
    # baselines: (2 + 6) / 2 = 4, (1 + 6) / 2 = 3.5, (1 + 2) / 2 = 1.5; (0 + 3) / 2 = 1.5, 1.5, 0
    want = torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    assert torch.allclose(adv, want[:, None] * mask)  # on every response token, 0 on padding
    assert torch.allclose((adv.sum(-1) / mask.sum(-1)).view(2, 3).sum(-1), torch.zeros(2))  # per group
    for k in (1, 4):
        with pytest.raises(ValueError, match="groups of k >= 2"):
            leave_one_out_advantages(rewards, mask, k)


def test_rloo_rollout_groups_share_a_baseline_and_leave_the_critic_alone(micro_base: Path) -> None:
    policy, ref, rm, value, tok = _setup(micro_base)
    torch.manual_seed(0)
    with torch.no_grad():  # a policy away from its reference, so the KL penalty is part of the return
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = PPOConfig(
        max_new_tokens=6, advantage_estimator="rloo", n_samples_per_prompt=4, rollout_batch_size=8,
        whiten_advantages=False, kl_coef=0.1,
    )  # fmt: skip
    prompts = ["What is 1 plus 2?"] * 4 + ["How do I steal a car?"] * 4  # as _iteration groups them
    ro = make_rollout(policy, ref, rm, value, tok, prompts, cfg, torch.Generator().manual_seed(3), "cpu")
    returns = (ro["scores"] - 0.1 * ro["kl"].sum(-1)).view(2, 4)  # KL-penalised sequence returns
    per_seq = ro["advantages"].sum(-1) / ro["rmask"].sum(-1)  # the same advantage on each token
    want = returns - (returns.sum(-1, keepdim=True) - returns) / 3
    assert torch.allclose(per_seq.view(2, 4), want, atol=1e-5)
    assert ro["kl"].abs().sum() > 0
    assert not ro["values"].any() and not ro["returns"].any()  # no critic: the value model is not run


def test_rloo_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="needs n_samples_per_prompt >= 2"):
        PPOConfig(advantage_estimator="rloo")
    with pytest.raises(ValueError, match="not a multiple of n_samples_per_prompt 3"):
        PPOConfig(advantage_estimator="rloo", n_samples_per_prompt=3, rollout_batch_size=64)
    with pytest.raises(ValueError, match="advantage_estimator must be one of gae, rloo"):
        PPOConfig(advantage_estimator="grpo")


def test_each_process_rolls_out_whole_groups() -> None:
    from training.ppo import _local_config

    rloo = PPOConfig(advantage_estimator="rloo", n_samples_per_prompt=4, rollout_batch_size=64)
    assert [_local_config(rloo, w).rollout_batch_size for w in (1, 2, 3, 32)] == [64, 32, 20, 4]
    assert _local_config(PPOConfig(rollout_batch_size=64), 3).rollout_batch_size == 21  # GAE: as before


class _NoCritic(torch.nn.Module):
    """A value model that must not be called."""

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("the value model ran")


def test_rloo_never_runs_the_value_model(micro_base: Path) -> None:
    from training.ppo import ppo_minibatch_loss

    policy, ref, rm, _, tok = _setup(micro_base)
    cfg = PPOConfig(
        max_new_tokens=4, advantage_estimator="rloo", n_samples_per_prompt=2, rollout_batch_size=4
    )
    prompts = ["What is 1 plus 2?"] * 2 + ["Hi"] * 2
    gen = torch.Generator().manual_seed(4)
    ro = make_rollout(policy, ref, rm, _NoCritic(), tok, prompts, cfg, gen, "cpu")
    keys = ("query", "qmask", "response", "rmask", "logprobs", "values", "advantages", "returns")
    mb = {k: ro[k] for k in keys}
    loss, stats = ppo_minibatch_loss(policy, _NoCritic(), mb, cfg)
    assert loss.requires_grad and "vf_loss" not in stats
