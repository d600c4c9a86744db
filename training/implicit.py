"""A reward model made of a DPO policy and its reference: r = beta * (log pi(x, y) - log pi_ref(x, y)) + bias.

DPO's implicit reward (Rafailov et al. 2023, eq. 5), packaged so that everything that takes a reward
model directory (PPO, best-of-n, evaluation, active learning) can use it. Why it exists: on the
alignment benchmark's unseen prompts a scalar-head reward model trained from the SFT policy on the
same rankings agreed with the oracle on 56-58 % of correct-vs-wrong pairs (chance: 50 %), and the DPO
policy's implicit reward on 83 % (bench/README.md): it judges an answer with the language model's own
next-token predictions rather than with a new head on the last token.

The score sums every real token, the prompt's included: that part is the same for every completion
of a prompt, so it changes no ranking (accuracy, best-of-n); under PPO it is a per-prompt constant
that the value model's baseline absorbs. The directory holds `policy/` and `reference/` (both HF
causal LMs), the tokenizer and IMPLICIT_FILE with beta and the bias that centres demonstrations at 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.batching import rm_scores
from training.chat import row_completion, row_prompt
from training.checkpoints import read_manifest, write_model_dir
from training.config import ImplicitRewardConfig
from training.losses import logprobs_of, position_ids_from_mask
from training.models import load_policy

IMPLICIT_FILE = "implicit_reward.json"


class ImplicitRewardModel(nn.Module):
    """`forward(input_ids, attention_mask) -> [B]`: beta times the summed log-ratio of the policy to
    the reference over every real next token, plus bias (the RewardModel calling convention)."""

    def __init__(self, policy: Any, reference: Any, beta: float, bias: float = 0.0) -> None:
        super().__init__()
        self.policy, self.reference = policy, reference
        self.beta, self.bias = float(beta), float(bias)

    def _logprobs(self, model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
        return logprobs_of(logits[:, :-1].float(), ids[:, 1:])  # [B, T-1]: token t+1 given its prefix

    def token_rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """beta times the log-ratio of each real next token, [B, T-1] (entry t scores token t+1), 0 on
        padding: the token-level reward DPO implies (Rafailov et al. 2024; Zhong et al. 2024, RTO)."""
        real = (attention_mask[:, 1:] * attention_mask[:, :-1]).float()  # both the token and its context
        ratio = self._logprobs(self.policy, input_ids, attention_mask) - self._logprobs(
            self.reference, input_ids, attention_mask
        )
        return self.beta * ratio * real

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Score per sequence [B]."""
        return self.token_rewards(input_ids, attention_mask).sum(-1) + self.bias


def is_implicit(path: str | Path) -> bool:
    """Whether the reward model directory at path is an implicit one."""
    return (Path(path) / IMPLICIT_FILE).exists()


def kl_coef_note(reward_model_dir: str | Path, kl_coef: float) -> str | None:
    """A warning when PPO's KL coefficient keeps it from going past the DPO policy, else None.

    PPO from the DPO run's reference maximises E[r] - kl_coef * KL(pi || pi_ref), whose best policy is
    proportional to pi_ref * exp(r / kl_coef) = pi_ref^(1 - beta/kl_coef) * pi_DPO^(beta/kl_coef): with
    kl_coef >= beta it lies between the reference and the DPO policy, so PPO can at most match DPO.
    """
    if not is_implicit(reward_model_dir):
        return None
    beta = float(json.loads((Path(reward_model_dir) / IMPLICIT_FILE).read_text())["beta"])
    if kl_coef < beta:
        return None
    return (
        f"ppo: kl_coef {kl_coef:g} >= the implicit reward's beta {beta:g}: started from the DPO run's "
        "reference, PPO's best policy lies between it and the DPO policy; a smaller kl_coef can go past DPO"
    )


def load_implicit_reward_model(path: str | Path) -> ImplicitRewardModel:
    """Load a directory written by write_implicit_reward_model (eval mode)."""
    path = Path(path)
    info = json.loads((path / IMPLICIT_FILE).read_text())
    policy, reference = load_policy(path / "policy")[0], load_policy(path / "reference")[0]
    return ImplicitRewardModel(policy, reference, info["beta"], info["bias"]).eval()


def write_implicit_reward_model(
    policy_dir: str | Path,
    reference_dir: str | Path,
    out_dir: str | Path,
    beta: float,
    demonstrations: list[dict[str, Any]] | None = None,
    max_length: int = 128,
    run: str | int | None = None,
    method: str | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """A reward model directory from a DPO policy and the reference it was trained against (its
    manifest's parent), centred (on `device`) so the demonstrations (sft.jsonl rows) score 0 on
    average. `method` defaults to the DPO run's."""
    policy, tok = load_policy(policy_dir)
    model = ImplicitRewardModel(policy, load_policy(reference_dir)[0], beta).eval()
    bias = 0.0
    if demonstrations:
        prompts = [row_prompt(d) for d in demonstrations]
        completions = [row_completion(d) for d in demonstrations]
        with torch.no_grad():
            bias = -rm_scores(model.to(device), tok, prompts, completions, max_length).mean().item()
        model.cpu()
    parent = read_manifest(policy_dir) or {}
    dpo = parent.get("metrics", {})

    def files(tmp: Path) -> None:
        model.policy.save_pretrained(tmp / "policy", safe_serialization=True)
        model.reference.save_pretrained(tmp / "reference", safe_serialization=True)
        for sub in ("policy", "reference", "."):
            tok.save_pretrained(tmp / sub)
        (tmp / IMPLICIT_FILE).write_text(json.dumps({"beta": beta, "bias": bias}))

    return write_model_dir(
        out_dir,
        files,
        kind="reward",
        parent=str(policy_dir),
        run=run,
        method=method or parent.get("method"),
        export_batch=parent.get("export_batch"),
        config={"implicit": {"beta": beta, "reference": str(reference_dir)}},
        metrics={"bias": bias, "dpo": {k: v for k, v in dpo.items() if k not in ("history", "train_loss")}},
    )


def implicit_reward_from_dpo(
    dpo_dir: str | Path,
    out_dir: str | Path,
    reference_dir: str | Path | None = None,
    beta: float | None = None,
    batch_dir: str | Path | None = None,
    **write: Any,
) -> Path:
    """write_implicit_reward_model for a policy written by run_dpo: the reference defaults to its
    manifest's parent, beta to its run's, and it is centred on batch_dir's train demonstrations;
    `write` passes max_length, run, method and device on."""
    from training.data import read_batch

    manifest = read_manifest(dpo_dir) or {}
    reference = reference_dir or manifest.get("parent")
    if not reference:
        raise ValueError(f"{dpo_dir}: no parent in its manifest; give the policy DPO started from")
    beta = beta or manifest.get("config", {}).get("dpo", {}).get("beta", 0.1)
    demos = read_batch(batch_dir).split("sft", "train") if batch_dir else None
    return write_implicit_reward_model(dpo_dir, reference, out_dir, float(beta), demos, **write)


def run_implicit_reward(
    config: ImplicitRewardConfig,
    batch_dir: str | Path,
    dpo_dir: str | Path,
    out_dir: str | Path,
    callbacks: Any = None,
    run: str | int | None = None,
    method: str | None = None,
) -> Path:
    """The round stage (app/runs/stages.py): the DPO policy at dpo_dir, against the policy it started
    from, as a reward model centred on the batch's demonstrations. Under several processes only the
    first writes (it trains nothing; the others return at once)."""
    from training.callbacks import Callbacks
    from training.models import make_accelerator

    cbs = Callbacks(callbacks)
    cbs.check_stop()
    if int(os.environ.get("RANK", "0")) != 0:
        return Path(out_dir)
    device = make_accelerator(config.runtime).device
    out = implicit_reward_from_dpo(
        dpo_dir, out_dir, beta=config.beta, batch_dir=batch_dir, max_length=config.max_length, run=run,
        method=method, device=device,
    )  # fmt: skip
    bias = float(json.loads((out / IMPLICIT_FILE).read_text())["bias"])
    cbs.progress("implicit_reward", 1, 1, {"bias": bias})
    return out
