"""What ops choose when they start a round: data, stages, settings, parent and the deploy gate."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.enums import Split, StageName
from training.config import PRESETS

TRAINING_STAGES = [StageName.sft, StageName.reward, StageName.ppo]
# PRESETS (quick, paper) live in training.config (pure dataclasses, no torch) so that
# `python -m training ... --preset` and rounds share them.


class DeployGate(BaseModel):
    """When a finished round deploys itself; otherwise it waits for an ops approval."""

    auto_deploy: bool = False
    # Evaluation on held-out prompts must show at least this mean RM-score gain over the parent.
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
