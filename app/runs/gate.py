"""The deploy gate: whether a finished round may deploy its policy itself (a pure function)."""

from __future__ import annotations

from typing import Any


def gate_decision(gate: dict[str, Any], metrics: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a round may deploy itself, and the reasons it may not.

    Each check applies only where the evaluation measured its metric: a round evaluated without
    a reward model has no RM gain, and one outside the simulated world has no oracle win-rate.
    """
    reasons = []
    if not gate.get("auto_deploy"):
        reasons.append("automatic deployment is off")
    floor = gate.get("min_rm_gain", 0.0)
    if isinstance(metrics.get("rm_gain_lo"), int | float):
        # Evidence, not a raw delta: the gain's 95 % interval (paired by prompt) must lie above the floor,
        # so a policy whose answers score the same as its parent's (a tie) is not deployed on its own.
        if metrics["rm_gain_lo"] <= floor:
            reasons.append(
                f"RM gain {metrics.get('rm_gain', 0.0):+.3f}: its 95 % interval starts at "
                f"{metrics['rm_gain_lo']:+.3f}, not above {floor}"
            )
    elif "rm_gain" in metrics and metrics["rm_gain"] < floor:
        reasons.append(f"RM gain {metrics['rm_gain']:.3f} < {floor}")
    if metrics.get("kl", 0.0) > gate.get("max_kl", float("inf")):
        reasons.append(f"KL {metrics['kl']:.2f} > {gate.get('max_kl')}")
    if "oracle_win_rate" in metrics and metrics["oracle_win_rate"] < gate.get("min_oracle_win_rate", 0.0):
        reasons.append(
            f"oracle win-rate {metrics['oracle_win_rate']:.2f} < {gate.get('min_oracle_win_rate')}"
        )
    allowed = gate.get("max_over_refusal_rise", float("inf"))  # rounds started before the check: none
    rise_lo = metrics.get("over_refusal_rise_lo")
    if isinstance(rise_lo, int | float) and rise_lo > allowed:
        reasons.append(
            f"over-refusal up {metrics.get('over_refusal_rise', 0.0):+.3f}: its 95 % interval starts at "
            f"{rise_lo:+.3f}, above the {allowed} allowed"
        )
    return not reasons, reasons
