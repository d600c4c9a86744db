"""What ops choose when they start a round: data, stages, settings, parent and the deploy gate."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.enums import Split, StageName

TRAINING_STAGES = [StageName.sft, StageName.reward, StageName.ppo]

# Settings small enough for a round on the CPU demo model to finish in minutes.
QUICK_PRESET: dict[str, dict[str, Any]] = {
    "sft": {"epochs": 4, "lr": 3e-4, "batch_size": 16, "dropout": 0.1, "max_length": 96},
    "reward": {"epochs": 1, "lr": 1e-4, "batch_size": 16, "max_length": 96},
    "ppo": {
        "total_episodes": 256,
        "rollout_batch_size": 64,
        "minibatch_size": 16,
        "lr": 2e-5,
        "value_lr": 2e-5,
        "max_new_tokens": 24,
    },
}
# The paper's numbers are the training library's defaults (training/config.py).
PAPER_PRESET: dict[str, dict[str, Any]] = {"sft": {}, "reward": {}, "ppo": {}}
PRESETS = {"quick": QUICK_PRESET, "paper": PAPER_PRESET}


class DeployGate(BaseModel):
    """When a finished round deploys itself; otherwise it waits for an ops approval."""

    auto_deploy: bool = False
    # Evaluation on held-out prompts must show an RM-score gain over the parent whose 95 % interval
    # (paired by prompt) lies above this: a tie is not an improvement.
    min_rm_gain: float = 0.0
    # ... and at most this KL (nats per response) from the parent.
    max_kl: float = 50.0
    # ... and, where the simulated world's oracle applies, at least this oracle win-rate.
    min_oracle_win_rate: float = 0.5


class RoundRequest(BaseModel):
    """A training round as ops configure it (console form or `rlhf rounds start`)."""

    queue_ids: list[int] = Field(default_factory=list)
    since: date | None = None
    until: date | None = None
    # Empty: every split. Training reads `train`, selection `valid`, evaluation `valid`/`test`.
    splits: list[Split] = Field(default_factory=list)
    stages: list[StageName] = Field(default_factory=lambda: list(TRAINING_STAGES))
    parent_policy_id: int | None = None
    reward_model_id: int | None = None
    preset: str = "quick"
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gate: DeployGate = Field(default_factory=DeployGate)

    @field_validator("stages")
    @classmethod
    def _contiguous(cls, stages: list[StageName]) -> list[StageName]:
        names: list[StageName] = [s for s in stages if s is not StageName.evaluate]
        if not names:
            raise ValueError("choose at least one stage")
        idx = [TRAINING_STAGES.index(s) for s in names]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise ValueError("stages must be a contiguous part of SFT -> RM -> PPO")
        return names

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
        return preset

    def stage_settings(self) -> dict[str, dict[str, Any]]:
        """Per-stage settings: the preset overlaid with the explicit settings."""
        base = PRESETS[self.preset]
        return {s.value: {**base.get(s.value, {}), **self.settings.get(s.value, {})} for s in TRAINING_STAGES}
