"""Active learning on the simulated world: rankings chosen by reward-model uncertainty vs at random.

Pool-based, as a queue in uncertainty order runs: a pool of world prompts, each with K candidate
completions (a ranking task). Both strategies start from the same random tasks; each round the
reward model is refitted on the rankings so far, and the next batch of tasks is chosen either by
`training.uncertainty.margin_uncertainty` of the RM's K scores (what the sampling worker stores
on a task; highest first) or at random. A simulated labeler ranks the chosen tasks. After each
round the RM's accuracy is measured on held-out comparisons: K candidates for unseen test prompts
(held-out arguments and phrasings), ranked by a different simulated labeler (the label noise the
RM is trained on), and the same pairs ordered by the world's oracle (no noise).

The reward model here is a Bradley-Terry linear model over hashed word and word-pair features of
the prompt and completion (fitted by L-BFGS with L2), not the transformer RM of `training.reward`:
fitting one per round per seed keeps the whole table within a few minutes on a CPU. The
uncertainty score and the selection are the ones the platform uses.

Run: `python -m bench.active_learning [--seeds 5] [--pool 1500] [--rounds 10] [--batch 40]`.
Prints a table with 95 % intervals over seeds (t distribution) and the paired difference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
import zlib
from dataclasses import dataclass
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import torch

from training.uncertainty import margin_uncertainty
from training.world import SimulatedLabeler, candidate_completions, make_prompts, oracle_score

DIM = 1 << 12
K = 4
_WORD = re.compile(r"[a-z0-9]+")
# Two-sided 97.5 % t quantiles by degrees of freedom (no scipy in the environment).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 14: 2.145, 19: 2.093, 29: 2.045}


def _h(token: str) -> int:
    return zlib.crc32(token.encode()) % DIM


def features(prompt: str, completion: str) -> torch.Tensor:
    """Hashed, L2-normalised features of a (prompt, completion): completion words and bigrams,
    prompt-word x completion-word crosses (first 3 prompt words), length and overlap buckets."""
    p, c = _WORD.findall(prompt.lower()), _WORD.findall(completion.lower())
    idx = [_h("c:" + w) for w in c]
    idx += [_h(f"b:{a}_{b}") for a, b in pairwise(c)]
    idx += [_h(f"x:{pw}|{w}") for pw in p[:3] for w in set(c)]
    overlap = len(set(p) & set(c)) / max(1, len(set(c)))
    idx += [_h(f"len:{min(len(c), 30) // 3}"), _h(f"ov:{round(overlap * 5)}")] * 2
    v = torch.bincount(torch.tensor(idx, dtype=torch.long), minlength=DIM).float()
    return v / max(1e-6, float(v.norm()))


@dataclass
class Task:
    """A world prompt and its K candidates, with their feature rows."""

    prompt: Any
    completions: list[str]
    x: torch.Tensor  # [K, DIM]


def make_tasks(n: int, seed: int, split: str) -> list[Task]:
    """n world prompts with K candidates each (distinct completions where possible)."""
    rng = random.Random(seed)
    out = []
    for p in make_prompts(n, seed=seed, split=split):
        comps = candidate_completions(p, K, rng)
        out.append(Task(p, comps, torch.stack([features(p.text, c) for c in comps])))
    return out


def pairs_of(ranks: list[int]) -> list[tuple[int, int]]:
    """(winner, loser) indices of a ranking's untied pairs."""
    return [(i, j) if ranks[i] < ranks[j] else (j, i) for i, j in combinations(range(len(ranks)), 2)
            if ranks[i] != ranks[j]]


def fit(diffs: torch.Tensor, l2: float = 1e-2, steps: int = 60) -> torch.Tensor:
    """Bradley-Terry weights: minimise mean -log sigmoid(w . (x_w - x_l)) + l2 |w|^2 (L-BFGS)."""
    w = torch.zeros(DIM, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -torch.nn.functional.logsigmoid(diffs @ w).mean() + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def accuracy(w: torch.Tensor, held: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Fraction of held-out (winner features, loser features) pairs the weights order correctly."""
    xw = torch.stack([a for a, _ in held])
    xl = torch.stack([b for _, b in held])
    return float(((xw - xl) @ w > 0).float().mean())


Pairs = list[tuple[torch.Tensor, torch.Tensor]]


def held_out(n: int, seed: int) -> tuple[Pairs, Pairs]:
    """Held-out comparisons on unseen test prompts: ranked by a labeler, and ordered by the oracle."""
    labeler = SimulatedLabeler(seed=10_000 + seed)
    by_labeler, by_oracle = [], []
    for t in make_tasks(n, seed=50_000 + seed, split="test"):
        for a, b in pairs_of(labeler.rank(t.prompt, t.completions)):
            by_labeler.append((t.x[a], t.x[b]))
        scores = [oracle_score(t.prompt, c) for c in t.completions]
        for i, j in combinations(range(K), 2):
            if scores[i] != scores[j]:
                a, b = (i, j) if scores[i] > scores[j] else (j, i)
                by_oracle.append((t.x[a], t.x[b]))
    return by_labeler, by_oracle


def run_strategy(strategy: str, pool: list[Task], seed: int, rounds: int, batch: int,
                 held: tuple[Pairs, Pairs]) -> list[dict[str, float]]:
    """Label `batch` tasks per round chosen by `strategy`; the RM's held-out accuracy after each."""
    rng = random.Random(seed)
    labeler = SimulatedLabeler(seed=seed)
    start = rng.sample(range(len(pool)), batch)  # the same first batch for both strategies
    labeled: set[int] = set()
    diffs: list[torch.Tensor] = []
    history = []
    chosen = start
    for r in range(rounds):
        for i in chosen:
            labeled.add(i)
            t = pool[i]
            for a, b in pairs_of(labeler.rank(t.prompt, t.completions)):
                diffs.append(t.x[a] - t.x[b])
        w = fit(torch.stack(diffs))
        history.append({"labels": len(labeled), "pairs": len(diffs), "acc_labeler": accuracy(w, held[0]),
                        "acc_oracle": accuracy(w, held[1])})
        if r == rounds - 1:
            break
        rest = [i for i in range(len(pool)) if i not in labeled]
        if strategy == "random":
            chosen = rng.sample(rest, batch)
        else:
            scores = {i: margin_uncertainty((pool[i].x @ w).tolist()) for i in rest}
            chosen = sorted(rest, key=lambda i: (-scores[i], i))[:batch]
    return history


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval over seeds."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = T975.get(n - 1) or T975[max(k for k in T975 if k <= n - 1)]
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every seed and strategy; print the table; write .bench/active_learning/results.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pool", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--held", type=int, default=600)
    ap.add_argument("--out", default=".bench/active_learning")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0, load0 = time.time(), os.getloadavg()[0]
    runs: dict[str, list[list[dict[str, float]]]] = {"random": [], "uncertainty": []}
    for seed in range(args.seeds):
        pool = make_tasks(args.pool, seed=seed, split="train")
        held = held_out(args.held, seed)
        for strategy in runs:
            runs[strategy].append(run_strategy(strategy, pool, seed, args.rounds, args.batch, held))
        print(f"seed {seed} done ({time.time() - t0:.0f} s)", flush=True)
    load1 = os.getloadavg()[0]
    print(f"\nRM accuracy on held-out comparisons ({args.seeds} seeds, pool {args.pool} tasks of K = {K}, "
          f"{len(held[0])} labeler / {len(held[1])} oracle pairs per seed; mean [95 % interval over seeds])")
    head = "| labels | random (labeler) | uncertainty (labeler) | difference | random (oracle) | " \
           "uncertainty (oracle) | difference |"
    print(head)
    print("|" + "---|" * 7)
    rows = []
    for r in range(args.rounds):
        cells = [str(runs["random"][0][r]["labels"])]
        row: dict[str, Any] = {"labels": runs["random"][0][r]["labels"]}
        for key in ("acc_labeler", "acc_oracle"):
            rnd = [h[r][key] for h in runs["random"]]
            unc = [h[r][key] for h in runs["uncertainty"]]
            diff = [u - v for u, v in zip(unc, rnd, strict=True)]
            for name, vals in (("random", rnd), ("uncertainty", unc), ("difference", diff)):
                m, lo, hi = interval(vals)
                sign = "+" if name == "difference" and m >= 0 else ""
                cells.append(f"{sign}{m * 100:.1f} [{lo * 100:.1f}, {hi * 100:.1f}]")
                row[f"{key}_{name}"] = [m, lo, hi]
        rows.append(row)
        print("| " + " | ".join(cells) + " |")
    took = time.time() - t0
    print(f"\n{took:.0f} s; load average {load0:.1f} at start, {load1:.1f} at end (shared machine)")
    result = {"args": vars(args), "rows": rows, "seconds": took, "load": [load0, load1], "runs": runs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
