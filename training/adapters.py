"""LoRA through peft for SFT, the reward model and PPO.

A stage wraps its model after loading (`lora_r` > 0 in its config), trains only the adapters (and a
reward model's scalar head), and merges them before writing, so every registered version is a plain
model directory that sampling and later rounds load without knowing about adapters. In PPO the
KL reference is the same weights with the adapter switched off: no second copy of the model.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

SCORE_HEAD = "score"  # the scalar head of AutoModelForSequenceClassification


def lora_config(cfg: Any, modules_to_save: list[str] | None = None) -> Any:
    """A peft LoraConfig from a stage config's lora_* fields (targets: "all-linear" or a comma list)."""
    from peft import LoraConfig

    targets: str | list[str] = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        exclude_modules=modules_to_save,
        modules_to_save=modules_to_save,
        bias="none",
    )


def uses_lora(cfg: Any) -> bool:
    """Whether a stage config asks for LoRA."""
    return int(getattr(cfg, "lora_r", 0) or 0) > 0


def is_adapted(model: Any) -> bool:
    """Whether model is a peft model with adapters."""
    from peft import PeftModel

    return isinstance(model, PeftModel)


def wrap_policy(model: Any, cfg: Any) -> Any:
    """The causal LM with LoRA adapters (only they train) when cfg.lora_r > 0, else the model itself."""
    if not uses_lora(cfg):
        return model
    from peft import get_peft_model

    return get_peft_model(model, lora_config(cfg))


def wrap_reward_model(rm: Any, cfg: Any) -> Any:
    """Inject LoRA into a RewardModel's backbone in place, keeping its scalar head fully trainable."""
    if not uses_lora(cfg):
        return rm
    from peft import get_peft_model

    # The adapters go into rm.model's own modules, so RewardModel keeps working unchanged; the peft
    # handle is kept (unregistered, so its parameters are not listed twice) for the merge.
    object.__setattr__(rm, "_peft", get_peft_model(rm.model, lora_config(cfg, [SCORE_HEAD])))
    return rm


def merged(model: Any) -> Any:
    """A plain model with the adapters merged into its weights (the model itself when it has none)."""
    return model.merge_and_unload() if is_adapted(model) else model


def merge_reward_model(rm: Any) -> Any:
    """Merge a RewardModel's LoRA adapters and trained head into plain modules, in place."""
    peft_model = rm.__dict__.pop("_peft", None)
    if peft_model is not None:
        rm.model = peft_model.merge_and_unload()
    return rm


class AdapterOffReference:
    """The KL reference of a LoRA policy: the same model called with its adapter disabled."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward with the adapter switched off."""
        with self.policy.disable_adapter():
            return self.policy(*args, **kwargs)

    def eval(self) -> AdapterOffReference:
        """No-op: the policy's own mode applies (make_rollout puts it in eval mode)."""
        return self

    def to(self, *args: Any, **kwargs: Any) -> AdapterOffReference:
        """No-op: the reference lives wherever the policy does."""
        return self


def frozen_reference(policy: Any) -> Any:
    """PPO's reference: the adapter-off view of a LoRA policy, else a frozen copy of the policy."""
    if is_adapted(policy):
        return AdapterOffReference(policy)
    ref: nn.Module = copy.deepcopy(policy)
    return ref.eval().requires_grad_(False)


def plain_copy(model: Any, state: dict[str, torch.Tensor] | None) -> Any:
    """A plain CPU model holding state (the live weights when None): adapters merged into a copy
    when the model has them, else a fresh model from the config (training.models.fresh_copy)."""
    if is_adapted(model) or "_peft" in model.__dict__:
        live = copy.deepcopy(model).cpu()
        if state is not None:
            live.load_state_dict(state)
        return (merged(live) if is_adapted(live) else merge_reward_model(live)).eval()
    from training.models import fresh_copy

    return fresh_copy(model, state)


def trainable_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The parameters that train (all of them without adapters)."""
    return [p for p in model.parameters() if p.requires_grad]


def no_adapter(model: Any) -> contextlib.AbstractContextManager[Any]:
    """Context in which a peft model runs as its base model (nothing for a plain model)."""
    return model.disable_adapter() if is_adapted(model) else contextlib.nullcontext()
