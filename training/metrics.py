"""Pure statistics for evaluating policies: contamination, intervals, win-rates with ties, paired differences.

Every interval is a 95 % normal-approximation interval over independent units (prompts): when a
prompt has several samples, average them per prompt first, so the interval respects the clustering.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Sequence

Z95 = 1.96
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise_prompt(text: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace: the form in which prompts are compared."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def contamination(test_prompts: Iterable[str], train_prompts: Iterable[str]) -> int:
    """How many test prompts equal some training prompt after normalise_prompt."""
    seen = {normalise_prompt(t) for t in train_prompts}
    return sum(normalise_prompt(t) in seen for t in test_prompts)


def mean_ci(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """Mean with a 95 % interval (normal approximation, sample standard deviation), clipped to bounds."""
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = Z95 * math.sqrt(var / n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return {"mean": mean, "lo": lo, "hi": hi, "n": n}


def proportion_ci(k: float, n: int) -> dict[str, float]:
    """A proportion k/n with its 95 % Wilson interval (sensible at 0 and 1)."""
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    p = k / n
    den = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return {"mean": p, "lo": max(0.0, centre - half), "hi": min(1.0, centre + half), "n": n}


def paired_diff_ci(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of a - b over paired units with its 95 % interval."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    return mean_ci([x - y for x, y in zip(a, b, strict=True)])


def outcome(score_a: float, score_b: float, tol: float = 1e-9) -> float:
    """1 if A scores higher, 0 if lower, 0.5 for a tie."""
    if abs(score_a - score_b) <= tol:
        return 0.5
    return 1.0 if score_a > score_b else 0.0


def win_rate_ci(scores_a: Sequence[Sequence[float]], scores_b: Sequence[Sequence[float]]) -> dict[str, float]:
    """Win-rate of A over B with ties counted half: sample i of a prompt against sample i of the same
    prompt, averaged per prompt, interval over prompts. Adds the tie and win fractions."""
    per_prompt, ties, wins, total = [], 0, 0, 0
    for sa, sb in zip(scores_a, scores_b, strict=True):
        outs = [outcome(x, y) for x, y in zip(sa, sb, strict=True)]
        per_prompt.append(sum(outs) / len(outs))
        ties += sum(o == 0.5 for o in outs)
        wins += sum(o == 1.0 for o in outs)
        total += len(outs)
    return {**mean_ci(per_prompt, (0.0, 1.0)), "ties": ties / max(1, total), "wins": wins / max(1, total)}


def per_prompt_means(values: Sequence[Sequence[float]]) -> list[float]:
    """The mean of each prompt's samples."""
    return [sum(v) / len(v) for v in values if len(v)]


def distinguishable_accuracy(
    pairs: Iterable[tuple[str, str, str, float, float]],
) -> dict[str, float]:
    """Accuracy of scores on pairs (prompt, winner text, loser text, winner score, loser score) whose
    texts differ; identical completions can not be told apart and are not counted as errors. Equal
    scores on different texts count half (a scorer that can not separate them guesses)."""
    right, total = 0.0, 0
    for _prompt, win, lose, s_win, s_lose in pairs:
        if win.strip() == lose.strip():
            continue
        total += 1
        right += outcome(s_win, s_lose)
    return {**proportion_ci(right, total), "pairs": total}


def label_ceiling(labels: Iterable[tuple[str, str, str]]) -> float:
    """The best accuracy any scorer can reach on labels (prompt, winner, loser): where the same two
    distinct texts are ordered both ways, only the majority direction can be right."""
    votes: dict[tuple[str, str, str], list[int]] = {}
    for prompt, win, lose in labels:
        if win.strip() == lose.strip():
            continue
        first, second = sorted((win, lose))
        votes.setdefault((prompt, first, second), [0, 0])[0 if win == first else 1] += 1
    total = sum(a + b for a, b in votes.values())
    return sum(max(a, b) for a, b in votes.values()) / max(1, total)


def pair_agreement(
    scores: Sequence[Sequence[float]],
    truth: Sequence[Sequence[float]],
    keep: Callable[[int, int, int], bool] | None = None,
) -> dict[str, float]:
    """How often a scorer orders two completions of the same prompt as a reference judge does.

    scores[i][j] and truth[i][j] score completion j of prompt i. Every pair of a prompt whose truth
    scores differ counts (pairs the judge ties carry no order); the scorer's ties count half.
    keep(i, better, worse), if given, selects pairs (better has the higher truth score).
    Returns the proportion with its Wilson interval and the number of pairs.
    """
    right, total = 0.0, 0
    for i, (s, t) in enumerate(zip(scores, truth, strict=True)):
        for a in range(len(t)):
            for b in range(a + 1, len(t)):
                if abs(t[a] - t[b]) <= 1e-9:
                    continue
                hi, lo = (a, b) if t[a] > t[b] else (b, a)
                if keep is not None and not keep(i, hi, lo):
                    continue
                total += 1
                right += outcome(s[hi], s[lo])
    return {**proportion_ci(right, total), "pairs": total}
