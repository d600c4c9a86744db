"""The value model starts from the reward model: its per-token values must carry the reward's bias."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from training.models import RewardModel


def test_token_values_include_the_bias_forward_adds() -> None:
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=20, n_positions=16, n_embd=8, n_layer=1, n_head=2, num_labels=1, pad_token_id=0
    )
    rm = RewardModel(GPT2ForSequenceClassification(cfg).eval(), bias=-2.5)
    ids = torch.tensor([[3, 4, 5, 6], [0, 7, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    with torch.no_grad():
        values, scores = rm.token_values(ids, mask), rm(ids, mask)
        unbiased = RewardModel(rm.model, bias=0.0).token_values(ids, mask)
    # the value at the last real token is the score, and every position is shifted by the bias
    assert torch.allclose(values[:, -1], scores)
    assert torch.allclose(values - unbiased, torch.full_like(values, -2.5))
