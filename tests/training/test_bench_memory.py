"""bench.memory: the PPO cases run (with and without a critic) and the formula counts what they hold."""

from __future__ import annotations

import argparse

import pytest
import torch

from bench.memory import (
    GIB,
    SMOLLM2_135M,
    _ppo_case,
    activation_bytes,
    formula_gib,
    lora_weight_gib,
    n_params,
)

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 128,
    "tie_word_embeddings": True,
}


def test_the_formula_drops_one_trained_model_and_its_activations_without_a_critic() -> None:
    N = n_params(SMOLLM2_135M)
    gae = formula_gib("ppo", SMOLLM2_135M, 4, 256, 4, True)
    rloo = formula_gib("ppo-rloo", SMOLLM2_135M, 4, 256, 4, True)
    value_activations = activation_bytes(SMOLLM2_135M, 4 * 256, 0, False, 2)
    assert (gae - rloo) * GIB == pytest.approx(16 * N + value_activations)
    full, lora = lora_weight_gib(SMOLLM2_135M, True)
    full_rloo, lora_rloo = lora_weight_gib(SMOLLM2_135M, True, critic=False)
    assert (full - full_rloo) * GIB == pytest.approx(16 * N)
    assert 0 < lora_rloo < lora and full_rloo > lora_rloo


@pytest.mark.parametrize("critic", [True, False])
def test_the_ppo_case_runs_an_iteration(critic: bool) -> None:
    torch.manual_seed(0)
    args = argparse.Namespace(device="cpu", batch=2, seq=16, micro=2)
    assert _ppo_case(TINY, torch.device("cpu"), False, critic, args) == 4 * 16
