"""Training math as small pure functions on tensors (shapes in comments). Each one is unit-tested.

Conventions: B = batch, T = sequence length, R = response length, V = vocabulary, K = completions
per prompt. Masks are 1 for real tokens and 0 for padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: [B, T] -> [B, T] (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position whose mask is 1: [B, T] -> [B] (0 for an all-zero row)."""
    T = mask.shape[-1]
    idx = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), idx, torch.zeros_like(idx)).max(dim=-1).values


def gather_last(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Value at the last real token: values [B, T], mask [B, T] -> [B]."""
    return values.gather(-1, last_token_index(mask).unsqueeze(-1)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over positions where mask is 1."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise x to zero mean and unit variance over masked positions: [B, R] -> [B, R]."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if n > 1:
        var = var * n / (n - 1)  # unbiased, as in the reference implementations
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of tokens under logits / temperature: logits [B, R, V], tokens [B, R] -> [B, R]."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy per position: [B, R, V] -> [B, R]."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token NLL on positions whose label is not -100 (the response): logits [B, T, V], labels [B, T]."""
    shift_logits = logits[:, :-1].float()  # [B, T-1, V]
    shift_labels = labels[:, 1:]  # [B, T-1]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100
    )


def rm_group_loss(
    scores: torch.Tensor,
    group: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InstructGPT eq. 1 with each prompt's pairs forming one batch element.

    scores [N] (one scalar per completion, each completion forwarded once), winners/losers [P]
    (indices into scores), group [P] (which prompt each pair belongs to, 0..G-1).
    Each prompt's loss is the mean over its untied pairs of -log sigmoid(r_w - r_l) (the 1/C(K,2)
    normalisation, with tied pairs dropped); the batch loss is the mean over prompts.
    weights [P] (optional) scale each pair's loss (edit pairs weighted apart; 1 changes nothing).
    Returns (loss [], per-pair correctness [P]).
    """
    margin = scores[winners] - scores[losers]  # [P]
    pair_loss = -F.logsigmoid(margin)  # [P]
    if weights is not None:
        pair_loss = pair_loss * weights.to(pair_loss.dtype)
    G = int(group.max().item()) + 1
    per_group = torch.zeros(G, dtype=pair_loss.dtype, device=pair_loss.device).index_add(0, group, pair_loss)
    counts = torch.bincount(group, minlength=G).to(pair_loss.dtype)  # [G]
    return (per_group / counts.clamp(min=1)).mean(), (margin > 0)


def kl_penalised_rewards(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    scores: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    token_scores: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -beta * (log pi - log pi_ref) on every response token, plus the RM score
    on the last real response token.
    logprobs/ref_logprobs/mask [B, R], scores [B] -> (rewards [B, R], kl [B, R]).
    token_scores [B, R] (optional): the part of each score that belongs to single response tokens
    (an implicit reward's per-token log-ratio); each goes on its own token and only the rest of the
    score (scores - their sum) on the last one, so every sequence's total reward is unchanged.
    """
    kl = (logprobs - ref_logprobs) * mask  # [B, R]
    rewards = -kl_coef * kl
    terminal = scores.to(rewards.dtype)
    if token_scores is not None:
        dense = token_scores.to(rewards.dtype) * mask
        rewards = rewards + dense
        terminal = terminal - dense.sum(-1)
    last = last_token_index(mask)  # [B]
    rewards = rewards.scatter_add(-1, last.unsqueeze(-1), terminal.unsqueeze(-1))
    return rewards * mask, kl


def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (rewards/values/mask [B, R]).

    Padding after the last real token is treated as terminal (value 0). Returns (advantages, returns) [B, R].
    """
    R = rewards.shape[-1]
    values = values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])  # [B]
    for t in reversed(range(R)):
        next_v = values[:, t + 1] if t + 1 < R else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < R else 0.0)
        adv[:, t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


def leave_one_out_advantages(rewards: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO's advantages (Ahmadian et al. 2024) on every response token, [B, R].

    Rows come in groups of k consecutive responses to the same prompt; a response's return is its
    summed (KL-penalised) reward, and its baseline the mean return of the other k - 1 of its group.
    """
    if k < 2 or rewards.shape[0] % k:
        raise ValueError(f"leave-one-out needs groups of k >= 2 rows; got {rewards.shape[0]} rows, k={k}")
    returns = (rewards * mask).sum(-1).view(-1, k)
    baseline = (returns.sum(-1, keepdim=True) - returns) / (k - 1)
    return (returns - baseline).reshape(-1, 1) * mask


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss, masked mean over tokens: all [B, R] -> (loss [], clip fraction [])."""
    ratio = torch.exp(logprobs - old_logprobs)
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(pg1, pg2), mask)
    clipfrac = masked_mean((pg2 > pg1).float(), mask)
    return loss, clipfrac


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """Clipped value loss 0.5 * max((v - G)^2, (clip(v) - G)^2), masked mean: all [B, R] -> []."""
    v_clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)


def truncate_after_eos(
    tokens: torch.Tensor, eos_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace everything after the first EOS by PAD: tokens [B, R] -> (tokens, mask [B, R], finished [B]).

    The EOS itself stays a real token (mask 1); a row without EOS is unfinished.
    """
    is_eos = tokens == eos_id
    finished = is_eos.any(-1)
    after = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
    mask = (~after).long()
    return tokens.masked_fill(after, pad_id), mask, finished


@torch.no_grad()
def ema_update(ema_params: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """ema = decay * ema + (1 - decay) * param, in place."""
    for e, p in zip(ema_params, params, strict=True):
        e.mul_(decay).add_(p.detach().to(e.dtype), alpha=1.0 - decay)


def response_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each sequence's response tokens (labels != -100).

    logits [B, T, V], labels [B, T] (the sft_batch layout: -100 on prompt and padding) -> [B].
    """
    shift_logits = logits[:, :-1]  # [B, T-1, V]: position t predicts token t+1
    shift_labels = labels[:, 1:]  # [B, T-1]
    mask = shift_labels != -100
    lp = logprobs_of(shift_logits, shift_labels.masked_fill(~mask, 0))  # [B, T-1]
    return (lp * mask).sum(-1)


def dpo_pair_losses(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss (Rafailov et al. 2023, eq. 7) and the implicit rewards.

    All inputs [P]: summed response log-probs under the policy and the frozen reference.
    sigmoid: -log sigmoid(beta * h) with h = (pi_w - ref_w) - (pi_l - ref_l); label_smoothing e
    gives conservative DPO, (1 - e) * -log sigmoid(beta h) + e * -log sigmoid(-beta h).
    ipo (Azar et al. 2023): (h - 1 / (2 beta))^2.
    Returns (losses [P], chosen rewards [P], rejected rewards [P]); rewards = beta * log-ratio, detached.
    """
    h = (chosen - ref_chosen) - (rejected - ref_rejected)  # [P]
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h) * (1 - label_smoothing) - F.logsigmoid(-beta * h) * label_smoothing
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}: use 'sigmoid' or 'ipo'")
    return losses, beta * (chosen - ref_chosen).detach(), beta * (rejected - ref_rejected).detach()


def chosen_nll(
    logps: torch.Tensor,
    n_tokens: torch.Tensor,
    group: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
) -> torch.Tensor:
    """RPO's NLL term (Pang et al. 2024; TRL's rpo_alpha): the mean per-token negative log-likelihood
    of each group's chosen completions (those that win a pair and lose none), averaged per group and
    then over groups, as the DPO loss is. logps [N] summed response log-probs, n_tokens [N] their
    response lengths; group, winners, losers [P] as for dpo_group_loss. -> []."""
    lost = torch.zeros_like(logps, dtype=torch.bool).index_fill(0, losers, True)
    top = ~lost[winners]  # [P]: the pair's winner loses no pair of its group
    nll = -logps[winners] / n_tokens[winners].clamp_min(1).to(logps.dtype)
    # each chosen completion once per group: weight a winner by 1 / (pairs it wins)
    wins = torch.bincount(winners, minlength=logps.shape[0]).to(logps.dtype)
    weights = top.to(logps.dtype) / wins[winners]
    G = int(group.max().item()) + 1
    sums = torch.zeros(G, dtype=logps.dtype, device=logps.device).index_add(0, group, nll * weights)
    counts = torch.zeros(G, dtype=logps.dtype, device=logps.device).index_add(0, group, weights)
    present = counts > 0
    return (sums[present] / counts[present]).mean() if present.any() else logps.sum() * 0


def group_mean(
    values: torch.Tensor, group: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over groups of each group's mean: values [P], group [P] (ids 0..G-1) -> [].

    weights [P] (optional) scale each value before its group's mean (edit pairs weighted apart).
    """
    if weights is not None:
        values = values * weights.to(values.dtype)
    G = int(group.max().item()) + 1
    sums = torch.zeros(G, dtype=values.dtype, device=values.device).index_add(0, group, values)
    counts = torch.bincount(group, minlength=G).to(values.dtype)  # [G]
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def dpo_group_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    group: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO over comparison groups, each completion forwarded once (as rm_group_loss for the RM).

    logps/ref_logps [N] (one summed response log-prob per completion), winners/losers [P] (indices
    into them), group [P] (the prompt of each pair). Each prompt's loss is the mean over its untied
    pairs; the batch loss is the mean over prompts. With one pair per group this is plain DPO.
    weights [P] (optional) scale each pair's loss.
    Returns (loss [], chosen rewards [P], rejected rewards [P]).
    """
    losses, chosen_r, rejected_r = dpo_pair_losses(
        logps[winners], logps[losers], ref_logps[winners], ref_logps[losers], beta, label_smoothing, loss_type
    )
    return group_mean(losses, group, weights), chosen_r, rejected_r
