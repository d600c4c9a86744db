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


# One task's share of the agreement counters: (items, agree, compared, tau_sum, tau_n).
Counts = tuple[int, int, int, float, int]
ZERO: Counts = (0, 0, 0, 0.0, 0)


def task_counts(rankings: Sequence[tuple[int, Tiers]]) -> dict[int | None, Counts]:
    """One task's contribution to its queue's (key None) and each labeler's agreement counters.

    `rankings` is every (user id, tiers) of the task. A task counts once it has two rankings:
    one item, each labeler pair's shared comparisons (credited to both labelers), and each
    labeler's tau against the consensus of the others. Summing this over tasks gives the
    from-scratch agreement, so counters kept as after-minus-before deltas stay exact.
    """
    if len(rankings) < 2:
        return {}
    acc: dict[int | None, list[float]] = {None: [1, 0, 0, 0.0, 0]}
    for i, (u, tiers) in enumerate(rankings):
        mine = acc.setdefault(u, [0, 0, 0, 0.0, 0])
        mine[0] += 1
        tau = tau_against_consensus(tiers, [t for j, (_, t) in enumerate(rankings) if j != i])
        if tau is not None:
            for key in (None, u):
                acc[key][3] += tau
                acc[key][4] += 1
        for v, other in rankings[i + 1 :]:
            agree, compared = pair_agreement(tiers, other)
            acc[None][1] += agree
            acc[None][2] += compared
            for who in (u, v):
                row = acc.setdefault(who, [0, 0, 0, 0.0, 0])
                row[1] += agree
                row[2] += compared
    return {k: (int(v[0]), int(v[1]), int(v[2]), float(v[3]), int(v[4])) for k, v in acc.items()}


def counts_delta(
    before: dict[int | None, Counts], after: dict[int | None, Counts]
) -> dict[int | None, Counts]:
    """after - before per key, leaving out keys whose counts did not change."""
    out = {}
    for key in before.keys() | after.keys():
        b, a = before.get(key, ZERO), after.get(key, ZERO)
        d = (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3], a[4] - b[4])
        if d != ZERO:
            out[key] = d
    return out
