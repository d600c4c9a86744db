"""What ops choose when they start a round: method, data, stages, settings, parent and the deploy gate."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from app.enums import Split
from app.runs import stages as registry
from app.runs.paths import check_stage_paths


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
    # ... and, where it applies, no evidence that the policy refuses answerable, harmless requests more
    # often than its parent by more than this: the rise's 95 % interval (paired by prompt) may not lie
    # above it. The alignment benchmark's target allows 5 points over the base.
    max_over_refusal_rise: float = 0.05


class RoundRequest(BaseModel):
    """A training round as ops configure it (console form or `rlhf rounds start`)."""

    method: str = registry.DEFAULT_METHOD
    queue_ids: list[int] = Field(default_factory=list)
    since: date | None = None
    until: date | None = None
    # Empty: every split. Training reads `train`, selection `valid`, evaluation `valid`/`test`.
    splits: list[Split] = Field(default_factory=list)
    # Empty: every stage of the method.
    stages: list[str] = Field(default_factory=list)
    parent_policy_id: int | None = None
    reward_model_id: int | None = None
    # "quick" finishes on the CPU demo model in minutes, "paper" keeps the training library's
    # defaults (the papers' numbers); each stage's description holds its preset settings.
    preset: str = "quick"
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gate: DeployGate = Field(default_factory=DeployGate)

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in registry.METHODS:
            raise ValueError(f"method must be one of {', '.join(registry.METHODS)}")
        return method

    @field_validator("settings")
    @classmethod
    def _usable_settings(cls, settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # whoever builds the request (console form, CLI, code): known stages, keys, types and ranges
        for stage, values in settings.items():
            if stage not in registry.STAGES:
                raise ValueError(f"no stage is named {stage!r}; stages are {', '.join(registry.STAGES)}")
            try:
                registry.get(stage).check_settings(values)
            except ValueError as exc:
                raise ValueError(f"{registry.label(stage)} settings: {exc}") from None
        return check_stage_paths(settings)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        if preset not in registry.PRESET_NAMES:
            raise ValueError(f"preset must be one of {', '.join(registry.PRESET_NAMES)}")
        return preset

    @model_validator(mode="after")
    def _method_stages(self) -> RoundRequest:
        chosen = self.stages or list(registry.METHODS[self.method].stages)
        self.stages = registry.method_stages(self.method, chosen)
        # settings valid alone may clash with the preset's (a rollout that is not a multiple of the
        # quick preset's n_samples_per_prompt): check what the stages will run with, before any runs
        for stage, values in self.stage_settings().items():
            if stage in self.settings:
                try:
                    registry.get(stage).check_settings(values)
                except ValueError as exc:
                    label = registry.label(stage)
                    raise ValueError(f"{label} settings with the {self.preset} preset: {exc}") from None
        return self

    def stage_settings(self) -> dict[str, dict[str, Any]]:
        """Per-stage settings of the chosen stages: the preset overlaid with the explicit settings."""
        base = registry.preset_settings(self.preset)
        return {s: {**base.get(s, {}), **self.settings.get(s, {})} for s in self.stages}
