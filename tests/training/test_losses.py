"""Each piece of training math on hand-computed tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (
    chosen_nll,
    dpo_group_loss,
    dpo_pair_losses,
    ema_update,
    gae_advantages,
    gather_last,
    group_mean,
    kl_penalised_rewards,
    last_token_index,
    logprobs_of,
    masked_whiten,
    position_ids_from_mask,
    ppo_policy_loss,
    ppo_value_loss,
    response_logprobs,
    rm_group_loss,
    sft_loss,
    truncate_after_eos,
)


def test_last_token_under_left_and_right_padding() -> None:
    # left-padded prompt (2 pads), 2 response tokens, then 1 right pad
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [5, 6]
    values = torch.arange(14.0).view(2, 7)
    assert gather_last(values, mask).tolist() == [5.0, 13.0]
    assert position_ids_from_mask(mask)[0].tolist() == [0, 0, 0, 1, 2, 3, 3]


def test_truncate_after_eos_keeps_eos_and_flags_unfinished() -> None:
    eos, pad = 9, 0
    toks, mask, fin = truncate_after_eos(torch.tensor([[5, 9, 7, 9], [5, 6, 7, 8]]), eos, pad)
    assert toks.tolist() == [[5, 9, 0, 0], [5, 6, 7, 8]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert fin.tolist() == [True, False]


def test_rm_group_loss_normalises_per_prompt() -> None:
    # prompt 0: K=3 completions scored 2,1,0 with all 3 pairs; prompt 1: one pair scored 0 vs 1 (wrong way)
    scores = torch.tensor([2.0, 1.0, 0.0, 0.0, 1.0])
    group = torch.tensor([0, 0, 0, 1])
    winners, losers = torch.tensor([0, 0, 1, 3]), torch.tensor([1, 2, 2, 4])
    loss, correct = rm_group_loss(scores, group, winners, losers)
    ls = lambda x: -math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    g0 = (ls(1) + ls(2) + ls(1)) / 3
    g1 = ls(-1)
    assert loss.item() == pytest.approx((g0 + g1) / 2, rel=1e-6)
    assert correct.tolist() == [True, True, True, False]


def test_kl_rewards_put_score_on_last_real_response_token() -> None:
    lp = torch.tensor([[-1.0, -2.0, -3.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    rewards, kl = kl_penalised_rewards(lp, ref, torch.tensor([5.0]), mask, kl_coef=0.1)
    assert kl.tolist() == [[0.5, 0.0, -1.0, 0.0]]
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.0, 0.1 + 5.0, 0.0])


def test_token_scores_go_on_their_own_tokens_and_keep_each_sequences_total() -> None:
    lp = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0, 0.0], [-1.0, -2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    scores = torch.tensor([5.0, -1.0])
    token = torch.tensor([[0.5, -0.25, 1.0, 9.0], [0.25, 0.25, 9.0, 9.0]])  # 9s are padding: ignored
    sparse, kl = kl_penalised_rewards(lp, ref, scores, mask, kl_coef=0.1)
    dense, kl2 = kl_penalised_rewards(lp, ref, scores, mask, kl_coef=0.1, token_scores=token)
    assert torch.equal(kl, kl2)
    # each token's own part where it was generated, the rest (5 - 1.25, -1 - 0.5) on the last token
    assert dense[0].tolist() == pytest.approx([-0.05 + 0.5, -0.25, 0.1 + 1.0 + 3.75, 0.0])
    assert dense[1].tolist() == pytest.approx([0.25, -0.1 + 0.25 - 1.5, 0.0, 0.0])
    assert dense.sum(-1).tolist() == pytest.approx(sparse.sum(-1).tolist())  # the same return


def test_gae_with_gamma_one_is_return_minus_value() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0]])  # the value at the pad position is ignored
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.5, 0.8, 0.6, 0.0])
    assert ret[0].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0])
    adv, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    # deltas: d2 = 1 - 0.4 = 0.6, d1 = 0.4 - 0.2 = 0.2, d0 = 0.2 - 0.5 = -0.3
    assert adv[0].tolist() == pytest.approx([-0.3 + 0.5 * (0.2 + 0.5 * 0.6), 0.2 + 0.5 * 0.6, 0.6, 0.0])


def test_whitening_uses_only_masked_positions() -> None:
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    w = masked_whiten(x, mask)
    real = w[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.std().item() == pytest.approx(1.0, rel=1e-4)
    assert w[:, 2].tolist() == [0.0, 0.0]


def test_ppo_policy_loss_clips() -> None:
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.ones(1, 3)
    loss, clipfrac = ppo_policy_loss(new, old, adv, mask, clip_range=0.2)
    # token 0: min(1.5, 1.2) * 1 -> 1.2 (clipped); token 1: ratio .5 adv -1 -> max(.5, .8) = .8 (clipped);
    # token 2: 1.1 * 2 = 2.2 inside the range
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 2.2) / 3, rel=1e-5)
    assert clipfrac.item() == pytest.approx(2 / 3)


def test_ppo_value_loss_clips() -> None:
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    ret = torch.tensor([[1.0, 1.0]])
    loss = ppo_value_loss(new, old, ret, torch.ones(1, 2), clip_range=0.2)
    # token 0: max((1-1)^2, (0.2-1)^2) = .64; token 1: max(.81, .81) = .81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2, rel=1e-5)


def test_logprobs_divide_by_temperature() -> None:
    logits = torch.tensor([[[2.0, 0.0]]])
    lp = logprobs_of(logits, torch.tensor([[0]]), temperature=2.0)
    assert lp.item() == pytest.approx(math.log(math.exp(1) / (math.exp(1) + 1)), rel=1e-6)


def test_sft_loss_only_on_response_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 5)
    labels = torch.tensor([[-100, -100, 3, 1]])
    expected = (
        F.cross_entropy(logits[0, 1:2], torch.tensor([3]))
        + F.cross_entropy(logits[0, 2:3], torch.tensor([1]))
    ) / 2
    assert sft_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ema_update() -> None:
    e, p = [torch.tensor([1.0])], [torch.tensor([3.0])]
    ema_update(e, p, 0.75)
    assert e[0].item() == pytest.approx(1.5)


def test_response_logprobs_sum_only_response_tokens() -> None:
    # uniform logits over V = 4: every predicted token has log-prob -log 4
    logits = torch.zeros(2, 4, 4)
    labels = torch.tensor([[-100, -100, 2, 3], [-100, 1, -100, -100]])  # 2 and 1 response tokens
    assert response_logprobs(logits, labels).tolist() == pytest.approx([-2 * math.log(4), -math.log(4)])
    # a confident logit on the labelled token raises exactly that token's log-prob
    logits[0, 1, 2] = math.log(3.0)  # position 1 predicts token 2 with p = 3 / 6
    assert response_logprobs(logits, labels)[0].item() == pytest.approx(math.log(0.5) - math.log(4))


def test_dpo_loss_by_hand() -> None:
    # policy: chosen -1, rejected -3; reference: both -2 -> h = (1) - (-1) = 2, beta * h = 1
    args = (torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]))
    loss, rc, rr = dpo_pair_losses(*args, beta=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))  # -log sigmoid(1) = 0.31326
    assert (rc.item(), rr.item()) == (pytest.approx(0.5), pytest.approx(-0.5))
    smooth, _, _ = dpo_pair_losses(*args, beta=0.5, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + math.e))
    ipo, _, _ = dpo_pair_losses(*args, beta=0.5, loss_type="ipo")
    assert ipo.item() == pytest.approx((2 - 1 / (2 * 0.5)) ** 2)  # = 1
    at_ref, _, _ = dpo_pair_losses(torch.tensor([-4.0]), torch.tensor([-4.0]), *args[2:], beta=0.1)
    assert at_ref.item() == pytest.approx(math.log(2))  # policy == reference: -log sigmoid(0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_pair_losses(*args, beta=0.5, loss_type="hinge")


def test_dpo_group_loss_is_the_mean_over_prompts_of_their_pair_means() -> None:
    logps = torch.tensor([-1.0, -2.0, -3.0, -1.0, -5.0])  # prompt 0: completions 0-2, prompt 1: 3-4
    ref = torch.full((5,), -2.0)
    group, winners, losers = (
        torch.tensor([0, 0, 0, 1]),
        torch.tensor([0, 0, 1, 3]),
        torch.tensor([1, 2, 2, 4]),
    )
    loss, rc, rr = dpo_group_loss(logps, ref, group, winners, losers, beta=1.0)

    def pair(h: float) -> float:
        return math.log(1 + math.exp(-h))

    # pair margins h: (-1) - (-2) = 1, (-1) - (-3) = 2, (-2) - (-3) = 1; prompt 1: (-1) - (-5) = 4
    expected = ((pair(1) + pair(2) + pair(1)) / 3 + pair(4)) / 2
    assert loss.item() == pytest.approx(expected)
    assert rc.tolist() == [1.0, 1.0, 0.0, 1.0] and rr.tolist() == [0.0, -1.0, -1.0, -3.0]
    assert group_mean(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0, 0, 2])).item() == pytest.approx(6.0)


def test_chosen_nll_is_the_per_token_nll_of_each_groups_unbeaten_winners() -> None:
    logps = torch.tensor([-2.0, -9.0, -9.0, -3.0, -8.0, -9.0])
    n_tokens = torch.tensor([2, 3, 3, 1, 4, 5])
    # group 0 ranks 0 > 1 > 2 (1 wins a pair but loses one); group 1 ties 3 and 4 above 5
    group = torch.tensor([0, 0, 0, 1, 1])
    winners, losers = torch.tensor([0, 0, 1, 3, 4]), torch.tensor([1, 2, 2, 5, 5])
    expected = (2.0 / 2 + (3.0 / 1 + 8.0 / 4) / 2) / 2  # mean over groups of their chosen ones' means
    assert chosen_nll(logps, n_tokens, group, winners, losers).item() == pytest.approx(expected)
