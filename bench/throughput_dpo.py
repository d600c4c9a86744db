"""Data for the DPO rows of bench/training_throughput.py (ours against TRL 1.16's DPOTrainer at K = 9).

Same model, lengths, fp32, threads and sequences forwarded per step: ours grouped takes 4 prompts
of K completions (4K sequences, every untied pair of each ranking), TRL takes 2K pairs (chosen and
rejected forwarded per pair, 4K sequences). Reference log-probs are computed once before training
by both (TRL: precompute_ref_log_probs=True), so the timed steps are policy passes only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

GROUPS = 4  # prompts per grouped step


def build_rankings(root: Path, k: int, n_prompts: int, seed: int = 0) -> dict[str, Path]:
    """An export batch of K-way rankings, and the same untied pairs as TRL preference rows."""
    from training.chat import render_default
    from training.data import group_comparisons, write_batch
    from training.world import SimulatedLabeler, candidate_completions, make_prompts
    from training.world.simulate import ranking_records

    prompts = make_prompts(n_prompts, seed=seed)
    rng = random.Random(seed)
    comps = [candidate_completions(p, k, rng) for p in prompts]
    rankings = ranking_records(
        prompts, ["train"] * len(prompts), comps, [SimulatedLabeler(s) for s in range(3)]
    )
    batch = write_batch(root / "batch", rankings=rankings)
    pairs = [
        {
            "prompt": render_default([{"role": "user", "content": g.prompt}], add_generation_prompt=True),
            "chosen": " " + g.completions[w],
            "rejected": " " + g.completions[lo],
        }
        for g in group_comparisons(rankings, [])
        for w, lo in g.pairs
    ]
    rng.shuffle(pairs)  # TRL shuffles too; the per-pair rows should not all come from a few prompts
    trl_rows = root / "trl_pairs.jsonl"
    trl_rows.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    return {"batch": batch, "trl_pairs": trl_rows}
