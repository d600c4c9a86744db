"""Simulated labelers: demonstrations, noisy rankings and Likert ratings (pure Python).

A labeler perceives the oracle score plus Gaussian noise of scale NOISE_SIGMA, drawn afresh for
each completion. NOISE_SIGMA is calibrated (tests/training/test_world.py) so that two labelers
agree on about 73 % of the untied comparisons of world-candidate completions, the paper's 72.6 %.
Identical completions always tie.

Demonstrations are written as people write them: imperfect at a stated rate (DEMO_ERRORS), and
more often wrong in the families where writing is harder than judging (sorting, capitals letters,
constrained naming), while the same labelers rank completions of those families reliably.
"""

from __future__ import annotations

import itertools
import random

from training.world.corpus import continuation
from training.world.tasks import DECLINE, IDK, WorldPrompt, ideal_answer, oracle_score, parse_prompt

NOISE_SIGMA = 0.25
# Probability that a demonstration is wrong, needlessly verbose or off-format (else ideal).
DEMO_ERRORS: dict[str, dict[str, float]] = {
    "default": {"wrong": 0.08, "verbose": 0.08, "off_format": 0.08},
    "hard_to_write": {"wrong": 0.3, "verbose": 0.08, "off_format": 0.08},
}
HARD_TO_WRITE = ("sort", "upper", "constraint")

_VARIANTS = {
    IDK: [IDK, "I do not know the answer to that."],
    DECLINE: [DECLINE, "Sorry, I can not help with that."],
}


class SimulatedLabeler:
    """One labeler with its own noise stream; seed selects the labeler."""

    def __init__(self, seed: int = 0, noise: float = NOISE_SIGMA) -> None:
        self.seed = seed
        self.noise = noise
        self.rng = random.Random(seed * 7919 + 17)

    def demonstrate(self, prompt: WorldPrompt | str, errors: bool = True) -> str:
        """Write an answer to a prompt: the ideal one, or (at DEMO_ERRORS rates) a flawed one."""
        p = parse_prompt(prompt) if isinstance(prompt, str) else prompt
        if p is None:
            return IDK
        rates = DEMO_ERRORS["hard_to_write" if p.family in HARD_TO_WRITE else "default"]
        r = self.rng.random()
        if errors:
            for kind, rate in rates.items():
                if r < rate and not (kind == "wrong" and p.answer is None):
                    return continuation(p, kind, self.rng)
                r -= rate
        ideal = ideal_answer(p)
        return self.rng.choice(_VARIANTS.get(ideal, [ideal]))

    def perceive(self, prompt: WorldPrompt | str, completion: str) -> float:
        """The oracle score as this labeler perceives it once (noisy)."""
        return oracle_score(prompt, completion) + self.rng.gauss(0.0, self.noise)

    def rank(self, prompt: WorldPrompt | str, completions: list[str]) -> list[int]:
        """Ranks for completions, 1 = best; identical completions share a rank (a tie)."""
        seen: dict[str, float] = {}
        for c in completions:
            if c not in seen:
                seen[c] = self.perceive(prompt, c)
        order = sorted(seen, key=lambda c: -seen[c])
        rank_of = {c: i + 1 for i, c in enumerate(order)}
        return [rank_of[c] for c in completions]

    def rate(self, prompt: WorldPrompt | str, completion: str) -> int:
        """A 1..7 Likert rating of overall quality."""
        return int(min(7, max(1, round(1 + 6 * self.perceive(prompt, completion)))))


def pairwise_agreement(ranks_a: list[list[int]], ranks_b: list[list[int]]) -> float:
    """Fraction of pairs ordered strictly by both labelers on which they agree."""
    agree = total = 0
    for ra, rb in zip(ranks_a, ranks_b, strict=True):
        for i, j in itertools.combinations(range(len(ra)), 2):
            if ra[i] == ra[j] or rb[i] == rb[j]:
                continue
            total += 1
            agree += (ra[i] < ra[j]) == (rb[i] < rb[j])
    return agree / max(1, total)
