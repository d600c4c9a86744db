"""LoRA through peft: config fields, an adapter-off PPO reference, merged plain directories."""

from __future__ import annotations

from pathlib import Path

import torch

from training.adapters import AdapterOffReference, frozen_reference, trainable_parameters, wrap_policy
from training.config import PPOConfig, RewardConfig, RuntimeConfig, SFTConfig, apply_overrides

CPU = RuntimeConfig(device="cpu", threads=1)


def test_lora_settings_come_from_the_stage_config() -> None:
    cfg = apply_overrides(SFTConfig(), ["lora_r=4", "lora_alpha=8", "lora_target_modules=c_attn,c_proj"])
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules) == (4, 8, "c_attn,c_proj")
    assert SFTConfig().lora_r == 0 and PPOConfig().lora_target_modules == "all-linear"


def test_ppo_reference_is_the_policy_with_its_adapter_off(micro_base: Path) -> None:
    from training.models import load_policy

    model, _ = load_policy(micro_base)
    n_before = sum(p.numel() for p in model.parameters())
    policy = wrap_policy(model, PPOConfig(lora_r=4, lora_dropout=0.0))
    ref = frozen_reference(policy)
    assert isinstance(ref, AdapterOffReference)  # no second copy of the weights
    trained = trainable_parameters(policy)
    assert 0 < sum(p.numel() for p in trained) < n_before // 10
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad(), policy.disable_adapter():
        expected = policy.get_base_model()(input_ids=ids).logits
    with torch.no_grad():
        assert torch.allclose(ref(input_ids=ids).logits, expected)
        assert not torch.allclose(policy(input_ids=ids).logits, expected)


def test_lora_stages_write_merged_plain_directories(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from training.checkpoints import read_manifest
    from training.ppo import run_ppo
    from training.reward import run_reward
    from training.sft import run_sft

    lora = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    sft_cfg = SFTConfig(epochs=1, batch_size=16, select_by="last", runtime=CPU, **lora)
    sft = run_sft(sft_cfg, world_batch, micro_base, tmp_path / "sft")
    rm = run_reward(RewardConfig(batch_size=8, runtime=CPU, **lora), world_batch, sft, tmp_path / "rm")
    ppo_cfg = PPOConfig(
        total_episodes=8, rollout_batch_size=4, minibatch_size=2, max_new_tokens=4, runtime=CPU, **lora
    )
    ppo = run_ppo(ppo_cfg, world_batch, sft, rm, tmp_path / "ppo")
    base, tuned = load_file(micro_base / "model.safetensors"), load_file(sft / "model.safetensors")
    assert set(base) == set(tuned) and not any("lora" in k for k in tuned)
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    assert read_manifest(ppo)["metrics"]["history"][0]["kl"] == 0.0  # adapter off = the reference exactly
    for d in (rm, ppo):
        assert not any("lora" in k or "modules_to_save" in k for k in load_file(d / "model.safetensors"))
