"""The DPO rows of bench/training_throughput.py: ours against TRL 1.16's DPOTrainer at K = 4 and 9.

Same model, lengths, fp32, threads and sequences forwarded per step: ours grouped takes 4 prompts
of K completions (4K sequences, every untied pair of each ranking), ours per pair and TRL take 2K
pairs (chosen and rejected forwarded per pair, 4K sequences). Reference log-probs are computed
once before training by both (TRL: precompute_ref_log_probs=True), so the timed steps are policy
forward and backward passes only. Timing skips the first step.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

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


def run_dpo_phases(
    run_worker: Any, model: Path, root: Path, py: str, trl: str, steps: int, max_length: int = 128
) -> dict[str, dict[str, Any]]:
    """Time ours (grouped, per pair) and TRL's DPOTrainer at K = 4 and 9; results by row key."""
    res: dict[str, dict[str, Any]] = {}
    for k in (4, 9):
        files = build_rankings(root / f"dpo_k{k}", k, n_prompts=(steps + 2) * GROUPS)
        common = [
            "--model",
            str(model),
            "--max-length",
            str(max_length),
            "--steps",
            str(steps),
            "--k",
            str(k),
        ]
        ours = [py, "-m", "bench.throughput_ours", "dpo", *common, "--data", str(files["batch"])]
        res[f"dpo{k}_ours"] = run_worker([*ours, "--out", str(root / f"o_dpo{k}"), "--batch", str(GROUPS)])
        res[f"dpo{k}_pairs"] = run_worker(
            [*ours, "--out", str(root / f"p_dpo{k}"), "--batch", str(GROUPS * k // 2), "--pairs"]
        )
        trl_cmd = [
            trl,
            "bench/throughput_trl.py",
            "dpo",
            "--model",
            str(model),
            "--max-length",
            str(max_length),
        ]
        res[f"dpo{k}_trl"] = run_worker(
            [
                *trl_cmd,
                "--steps",
                str(steps),
                "--data",
                str(files["trl_pairs"]),
                "--out",
                str(root / f"t_dpo{k}"),
                "--batch",
                str(GROUPS * k // 2),
            ]
        )
    return res


def _get(r: dict[str, Any], key: str) -> float:
    return float(r.get(key, float("nan")))


def report_dpo(res: dict[str, dict[str, Any]]) -> None:
    """Print the DPO table: pairs/s and sequences/s of ours (grouped, per pair) and TRL, peak RSS."""
    print(
        "| DPO | ours grouped | ours per pair | TRL 1.16 DPOTrainer | grouped / TRL | per pair / TRL "
        "| peak RSS grouped / per pair / TRL (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in (4, 9):
        g, p, t = res[f"dpo{k}_ours"], res[f"dpo{k}_pairs"], res[f"dpo{k}_trl"]
        rss = f"{_get(g, 'peak_rss_mb'):.0f} / {_get(p, 'peak_rss_mb'):.0f} / {_get(t, 'peak_rss_mb'):.0f}"
        for unit in ("pairs", "sequences"):
            key = f"{unit}_per_s"
            a, b, c = _get(g, key), _get(p, key), _get(t, key)
            print(
                f"| {unit}/s (K={k}) | {a:.1f} | {b:.1f} | {c:.1f} | {a / c:.2f}x | {b / c:.2f}x | "
                f"{rss if unit == 'pairs' else ''} |"
            )
