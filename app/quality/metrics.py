"""Agreement statistics as pure functions over rankings given as {completion_id: tier} (1 = best)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from math import sqrt

Tiers = Mapping[int, int]


def strict_pairs(ranking: Tiers) -> dict[tuple[int, int], int]:
    """For each completion pair (a < b) the labeler ordered strictly: +1 if a is better, -1 if b is."""
    out = {}
    for a, b in combinations(sorted(ranking), 2):
        if ranking[a] != ranking[b]:
            out[(a, b)] = 1 if ranking[a] < ranking[b] else -1
    return out


def pair_agreement(x: Tiers, y: Tiers) -> tuple[int, int]:
    """(agreeing, compared): comparisons both labelers made strictly, and how many point the same way.

    A pair either labeler tied is not a comparison (InstructGPT drops tied pairs too).
    """
    px, py = strict_pairs(x), strict_pairs(y)
    common = px.keys() & py.keys()
    return sum(px[k] == py[k] for k in common), len(common)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b between two score lists (ties handled); None when either list is constant."""
    if len(x) != len(y):
        raise ValueError("tau needs two lists of equal length")
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    denom = sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    if denom == 0:
        return None
    return (concordant - discordant) / denom


def consensus(rankings: Sequence[Tiers]) -> dict[int, float]:
    """The consensus ranking of several labelers: each completion's mean tier (lower is better)."""
    keys = set().union(*(r.keys() for r in rankings)) if rankings else set()
    return {k: sum(r[k] for r in rankings if k in r) / sum(1 for r in rankings if k in r) for k in keys}


def tau_against_consensus(own: Tiers, others: Sequence[Tiers]) -> float | None:
    """Kendall's tau-b of one labeler's tiers against the consensus of the *other* labelers.

    Leaving the labeler out keeps them from agreeing with themselves.
    """
    if not others:
        return None
    cons = consensus(others)
    keys = sorted(k for k in own if k in cons)
    if len(keys) < 2:
        return None
    # Tiers and mean tiers both rank 1 = best, so the same direction means agreement.
    return kendall_tau_b([own[k] for k in keys], [cons[k] for k in keys])


def gold_score(answer: Tiers, given: Tiers) -> float | None:
    """The share of the gold answer's strict comparisons that the labeler made the same way.

    A labeler who ties a pair the answer orders gets it wrong; None when the answer orders nothing.
    """
    gold = strict_pairs(answer)
    if not gold:
        return None
    mine = strict_pairs(given)
    return sum(mine.get(k) == v for k, v in gold.items()) / len(gold)
