"""The run page's evaluation: the new policy against its parent, metric by metric, with intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.ops.charts import fmt_number

# Metrics the evaluation reports for both policies (new_<key> and parent_<key>), in display order.
PAIRED = {
    "rm_score": "Reward-model score (mean)",
    "oracle_score": "Oracle score (simulated world)",
    "made_up": "Made-up answers to unanswerable questions",
    "harmful_compliance": "Compliance with harmful requests",
    "over_refusal": "Refusals of answerable, harmless requests",
    "accuracy": "Correct answers (checkable questions)",
    "finished": "Completions that ended (EOS)",
    "response_tokens": "Response length (tokens)",
}

# Paired metrics whose difference has a 95 % interval, and the prefix of its bounds (<prefix>_lo, _hi).
PAIRED_INTERVALS = {"rm_score": "rm_gain", "over_refusal": "over_refusal_rise"}


@dataclass(frozen=True)
class EvalRow:
    """One line of the evaluation table: both policies, the difference and its 95 % interval."""

    name: str
    new: str
    parent: str
    difference: str
    interval: str = ""
    note: str = ""


@dataclass(frozen=True)
class Scorer:
    """The reward model whose scores the evaluation's RM rows show."""

    version_id: int
    name: str
    this_round: bool  # trained by the round itself (else registered before it)


def reward_model_id(m: dict[str, Any]) -> int | None:
    """The version id of the reward model that scored the evaluation; None when none did or the
    evaluation predates the record."""
    vid = m.get("reward_model_id")
    return int(vid) if isinstance(vid, int | float) and not isinstance(vid, bool) else None


def scorer(m: dict[str, Any], names: dict[int, str], round_outputs: set[int]) -> Scorer | None:
    """Which reward model scored the evaluation, named (names: version id -> name)."""
    vid = reward_model_id(m)
    if vid is None:
        return None
    return Scorer(vid, names.get(vid, f"version {vid}"), vid in round_outputs)


def _f(value: Any) -> str:
    return fmt_number(float(value)) if isinstance(value, int | float) else ""


def _interval(lo: Any, hi: Any, pct: bool = False) -> str:
    if not isinstance(lo, int | float) or not isinstance(hi, int | float):
        return ""
    return f"[{lo:.0%}, {hi:.0%}]" if pct else f"[{fmt_number(lo)}, {fmt_number(hi)}]"


def evaluation_rows(m: dict[str, Any]) -> list[EvalRow]:
    """The evaluation metrics as table rows (new vs parent), intervals where they were measured."""
    rows = []
    for key, name in PAIRED.items():
        new, old = m.get(f"new_{key}"), m.get(f"parent_{key}")
        if not isinstance(new, int | float) or not isinstance(old, int | float):
            continue
        paired = PAIRED_INTERVALS.get(key)
        interval = _interval(m.get(f"{paired}_lo"), m.get(f"{paired}_hi")) if paired else ""
        note = "95 % interval of the per-prompt difference (paired)" if interval else ""
        rows.append(EvalRow(name, _f(new), _f(old), f"{new - old:+.3g}", interval, note))
    if isinstance(m.get("oracle_win_rate"), int | float):
        rate = m["oracle_win_rate"]
        ties = m.get("oracle_ties")
        rows.append(EvalRow(
            "Oracle win-rate of the new policy over its parent", f"{rate:.0%}", "50 %", f"{rate - 0.5:+.0%}",
            _interval(m.get("oracle_lo"), m.get("oracle_hi"), pct=True),
            "ties count half" + (f"; {ties:.0%} ties" if isinstance(ties, int | float) else ""),
        ))
    if isinstance(m.get("kl"), int | float):
        kl = m["kl"]
        note = ("estimated from sampled tokens as the mean log-ratio; the true KL is never negative, "
                "so an estimate below 0 means the policies cannot be told apart on these prompts")
        rows.append(EvalRow("KL from the parent (nats per completion)", _f(max(0.0, kl)), "0", "",
                            "", note + (f" (raw estimate {fmt_number(kl)})" if kl < 0 else "")))
    return rows


def prompt_count(m: dict[str, Any]) -> int | None:
    """How many held-out prompts the evaluation used."""
    n = m.get("new_n", m.get("oracle_n"))
    return int(n) if isinstance(n, int | float) else None
