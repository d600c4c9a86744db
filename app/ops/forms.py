"""The start-round form: raw values kept for re-rendering, parsed into a RoundRequest with clear errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.enums import Split
from app.errors import AppError
from app.prompts.models import PromptQueue
from app.runs import stages as stage_defs
from app.runs.schemas import DeployGate, RoundRequest


class FormError(AppError):
    """The round form has a value that cannot be used; the form is shown again with this message."""

    status_code = 422


def preset_text(preset: str, stage: str) -> str:
    """A preset's settings for one stage as the JSON shown in its text area."""
    return json.dumps(stage_defs.preset_settings(preset).get(stage, {}), indent=2)


def presets_json() -> str:
    """Every preset's per-stage settings as JSON, for the script that refills the text areas."""
    return json.dumps(stage_defs.presets())


def methods_json() -> str:
    """Every method's stages as JSON, for the script that ticks a method's stages."""
    return json.dumps({m.name: list(m.stages) for m in stage_defs.METHODS.values()})


@dataclass
class RoundForm:
    """What the user typed, as strings, so a rejected form comes back exactly as sent."""

    method: str = stage_defs.DEFAULT_METHOD
    queue_ids: list[str] = field(default_factory=list)
    since: str = ""
    until: str = ""
    splits: list[str] = field(default_factory=lambda: [s.value for s in Split])
    # Every stage is ticked: the round runs the ticked ones that belong to the method.
    stages: list[str] = field(default_factory=lambda: list(stage_defs.STAGES))
    parent_policy_id: str = ""
    reward_model_id: str = ""
    preset: str = "quick"
    settings: dict[str, str] = field(
        default_factory=lambda: {s: preset_text("quick", s) for s in stage_defs.STAGES}
    )
    auto_deploy: bool = False
    min_rm_gain: str = str(DeployGate().min_rm_gain)
    max_kl: str = str(DeployGate().max_kl)
    min_oracle_win_rate: str = str(DeployGate().min_oracle_win_rate)
    max_over_refusal_rise: str = str(DeployGate().max_over_refusal_rise)

    @classmethod
    def from_form(cls, data: Any) -> RoundForm:
        """Read a submitted form (a Starlette FormData or any mapping with getlist)."""

        def one(name: str) -> str:
            value = data.get(name)
            return value.strip() if isinstance(value, str) else ""

        def many(name: str) -> list[str]:
            return [v.strip() for v in data.getlist(name) if isinstance(v, str) and v.strip()]

        return cls(
            method=one("method") or stage_defs.DEFAULT_METHOD,
            queue_ids=many("queue_ids"),
            since=one("since"),
            until=one("until"),
            splits=many("splits"),
            stages=many("stages"),
            parent_policy_id=one("parent_policy_id"),
            reward_model_id=one("reward_model_id"),
            preset=one("preset") or "quick",
            settings={s: one(f"settings_{s}") for s in stage_defs.STAGES},
            auto_deploy=one("auto_deploy") in {"on", "true", "1", "yes"},
            min_rm_gain=one("min_rm_gain"),
            max_kl=one("max_kl"),
            min_oracle_win_rate=one("min_oracle_win_rate"),
            max_over_refusal_rise=one("max_over_refusal_rise"),
        )


def _int(value: str, what: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise FormError(f"{what} must be a number, not {value!r}.") from None


def _float(value: str, what: str, default: float) -> float:
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise FormError(f"Deploy gate: {what} must be a number, not {value!r}.") from None


def _day(value: str, what: str) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise FormError(f"The {what} date must look like 2024-01-31, not {value!r}.") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_settings(stage: str, text: str) -> dict[str, Any]:
    """One stage's JSON settings, checked against the training library's field names and types."""
    label = stage_defs.label(stage)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError(f"{label} settings are not valid JSON: {exc.msg} (line {exc.lineno}).") from None
    if not isinstance(value, dict):
        raise FormError(f'{label} settings must be a JSON object such as {{"epochs": 2}}.')
    try:
        stage_defs.get(stage).check_settings(value)
    except ValueError as exc:
        raise FormError(f"{label} settings: {exc}.") from None
    return value


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return (
        f"{msg[:1].upper()}{msg[1:]}." if where in {"", "stages", "preset", "method"} else f"{where}: {msg}."
    )


def _check_queues(db: Session, ids: list[int]) -> None:
    found = set(db.scalars(select(PromptQueue.id).where(PromptQueue.id.in_(ids)))) if ids else set()
    missing = sorted(set(ids) - found)
    if missing:
        raise FormError(f"No queue with id {', '.join(map(str, missing))}.")


def to_request(db: Session, form: RoundForm) -> RoundRequest:
    """Validate the form into a RoundRequest, or raise FormError with one clear message."""
    queue_ids = [q for q in (_int(v, "A queue id") for v in form.queue_ids) if q is not None]
    _check_queues(db, queue_ids)
    since, until = _day(form.since, "start"), _day(form.until, "end")
    if since and until and until < since:
        raise FormError("The end date is before the start date.")
    if not form.splits:
        raise FormError("Choose at least one data split.")
    bad = [s for s in form.splits if s not in {x.value for x in Split}]
    if bad:
        raise FormError(f"Unknown split {bad[0]!r}.")
    if form.preset not in stage_defs.PRESET_NAMES:
        raise FormError(f"Preset must be one of {', '.join(stage_defs.PRESET_NAMES)}.")
    if form.method not in stage_defs.METHODS:
        raise FormError(f"Method must be one of {', '.join(m.label for m in stage_defs.METHODS.values())}.")
    # Ticked stages that belong to another method are ignored, so one form serves every method.
    chosen = [s for s in stage_defs.METHODS[form.method].stages if s in form.stages]
    if not chosen:
        raise FormError(f"Choose at least one stage of {stage_defs.describe(form.method)}.")
    settings = {s: parse_settings(s, form.settings.get(s, "")) for s in chosen}
    gate = DeployGate(
        auto_deploy=form.auto_deploy,
        min_rm_gain=_float(form.min_rm_gain, "minimum RM gain", DeployGate().min_rm_gain),
        max_kl=_float(form.max_kl, "maximum KL", DeployGate().max_kl),
        min_oracle_win_rate=_float(
            form.min_oracle_win_rate, "minimum oracle win-rate", DeployGate().min_oracle_win_rate
        ),
        max_over_refusal_rise=_float(
            form.max_over_refusal_rise, "maximum over-refusal rise", DeployGate().max_over_refusal_rise
        ),
    )
    try:
        return RoundRequest(
            method=form.method,
            queue_ids=queue_ids,
            since=since,
            until=until,
            splits=[Split(s) for s in form.splits],
            stages=chosen,
            parent_policy_id=_int(form.parent_policy_id, "The parent policy"),
            reward_model_id=_int(form.reward_model_id, "The reward model"),
            preset=form.preset,
            settings=settings,
            gate=gate,
        )
    except ValidationError as exc:
        raise FormError(_validation_message(exc)) from None
