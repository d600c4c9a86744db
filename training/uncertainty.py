"""How unsure a reward model is about the order of a prompt's K completions (active learning).

Pure Python, no torch: the sampling worker, the web app's tests and the benchmark share it.
Under the Bradley-Terry model the RM's probability that completion i beats j is
sigmoid(r_i - r_j); a pair's uncertainty is the binary entropy of that probability in bits
(1 at a margin of 0, falling towards 0 as the margin grows). A task's uncertainty is the mean
over its C(K, 2) pairs, so small score margins among the K completions mean an uncertain task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations, pairwise


def preference_probability(margin: float) -> float:
    """P(first beats second) = sigmoid(r_first - r_second), computed without overflow."""
    if margin >= 0:
        return 1.0 / (1.0 + math.exp(-margin))
    e = math.exp(margin)
    return e / (1.0 + e)


def binary_entropy(p: float) -> float:
    """Entropy in bits of a coin that lands heads with probability p (0 at 0 and 1, 1 at 0.5)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def margin_uncertainty(scores: Sequence[float]) -> float:
    """Mean pairwise preference entropy of K reward scores, in [0, 1] (1: every margin is 0)."""
    if len(scores) < 2:
        raise ValueError("uncertainty needs at least two scores")
    pairs = list(combinations(scores, 2))
    return sum(binary_entropy(preference_probability(a - b)) for a, b in pairs) / len(pairs)


def smallest_margin(scores: Sequence[float]) -> float:
    """The smallest absolute score difference between two of the completions (for display)."""
    if len(scores) < 2:
        raise ValueError("a margin needs at least two scores")
    ordered = sorted(scores)
    return min(b - a for a, b in pairwise(ordered))


def label_disagreement(scores: Sequence[float], ranks: Sequence[int]) -> float:
    """Share of a labeler's untied pairs (ranks: 1 = best) that the scores order the other way."""
    if len(scores) != len(ranks):
        raise ValueError("scores and ranks differ in length")
    untied = [(i, j) for i, j in combinations(range(len(ranks)), 2) if ranks[i] != ranks[j]]
    if not untied:
        return 0.0
    wrong = sum(1 for i, j in untied if (ranks[i] < ranks[j]) != (scores[i] > scores[j]))
    return wrong / len(untied)


def order_by_uncertainty(uncertainties: Sequence[float | None]) -> list[int]:
    """Indices in lease order: most uncertain first, unscored last, ties by index (oldest first)."""
    return sorted(
        range(len(uncertainties)),
        key=lambda i: (uncertainties[i] is None, -(uncertainties[i] or 0.0), i),
    )
