"""Compare a finished alignment run's policies with an 8x base pre-trained separately.

    python -m bench.alignment_large --run .bench/dev1/out --base BASE_DIR --large X8_DIR

For a run made with `--no-large` (the 8x base still pre-training elsewhere): the run's policies are
sampled again on the same unseen prompts with the same seeds as bench.alignment (so the samples are
the run's own), the 8x base is sampled likewise, and the oracle win-rates against it are printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.alignment import EVAL, SIZES, sample_texts, test_prompts
from bench.alignment_report import num, pct
from training.config import SamplingParams
from training.models import count_params, load_policy
from training.world.metrics import behaviour, oracle_win_rate


def main() -> None:
    """Print the 8x-base comparison table for a finished run."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="the --out directory of a finished bench.alignment run")
    ap.add_argument("--base", required=True, help="the small base model directory of that run")
    ap.add_argument("--large", required=True, help="the 8x base model directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run, sizes = Path(args.run), SIZES["full"]
    prompts = test_prompts(sizes["eval"], args.seed + 99)
    params = SamplingParams(**{**EVAL.to_dict(), "seed": args.seed + 1234})
    dirs = {"base": Path(args.base), "SFT": run / "sft", "PPO": run / "ppo", "base x8": Path(args.large)}
    samples = {name: sample_texts(d, prompts, sizes["samples"], params) for name, d in dirs.items()}
    n_small, n_large = (
        count_params(load_policy(dirs["base"])[0]),
        count_params(load_policy(dirs["base x8"])[0]),
    )
    steps = json.loads((dirs["base x8"] / "manifest.json").read_text())["config"]["base"]["steps"]
    print(f"## Against the 8x base ({n_large / 1e6:.2f}M params, {n_large / n_small:.1f}x; {steps} steps)")
    print("| policy | win-rate vs base x8 (ties half) | ties | oracle score |")
    print("|---|---|---|---|")
    for name in ("base", "SFT", "PPO", "base x8"):
        r = oracle_win_rate(prompts, samples[name], samples["base x8"])
        o = behaviour(prompts, samples[name])["oracle_score"]
        print(f"| {name} | {pct(r)} | {100 * r['ties']:.0f} % | {num(o)} |")
    verdict = oracle_win_rate(prompts, samples["PPO"], samples["base x8"])["lo"] > 0.5
    print(f"- {'PASS' if verdict else 'MISS'}: PPO beats the equally-trained 8x base (interval above 50 %)")


if __name__ == "__main__":
    main()
