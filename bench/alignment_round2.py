"""A second (and further) InstructGPT iteration on an alignment-benchmark run (development measurement).

    python -m bench.alignment_round2 RUN [--threads N] [--prompts N] [--rounds R]

RUN is an earlier `python -m bench.alignment --out` (its batch-2, sft, ppo, rm-scalar and
samples.json). What the platform's next round would do: the round-1 PPO policy samples
K - 1 distinct completions (plus one from SFT) for fresh ranked prompts, the same simulated labelers
rank them, and the batch holds round 1's rankings plus these. DPO from SFT on it (the benchmark's
settings), its implicit reward against SFT, then PPO from SFT against that reward. Prints round 2's
DPO policy, PPO and best-of-n against the run's own SFT samples on the same unseen prompts (the same
sampling seed as the benchmark's policies), beside round 1's. Writes RUN/round2/; a step whose
output is already there (an earlier invocation's) is reused, so delete RUN/round2 to start over.
--rounds R goes on to round R the same way: round r's PPO policy samples the next fresh prompts
and its batch grows by their rankings (RUN/round3/, ...); every round trains DPO and PPO from SFT.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.alignment import DPO_SETTINGS, EVAL, SIZES, best_of_n, sample_texts, settings
from bench.alignment_procs import Printer
from bench.alignment_report import pct, policy_rows
from training.config import DPOConfig, RuntimeConfig, SamplingParams
from training.data import read_batch, write_batch
from training.dpo import run_dpo
from training.implicit import write_implicit_reward_model
from training.ppo import run_ppo
from training.world import SimulatedLabeler, make_prompts
from training.world.hooks import PPO_HOOKS
from training.world.simulate import ranking_records, split_by_user

SEED = 0


def round_dirs(run: Path, r: int) -> tuple[Path, Path]:
    """Round r's (PPO policy, batch) directories: round 1's are the benchmark run's own."""
    if r == 1:
        return run / "ppo", run / "batch-2"
    return run / f"round{r}" / "ppo", run / f"round{r}" / f"batch-{r + 1}"


def next_round_batch(run: Path, r: int, n_prompts: int) -> Path:
    """Round r's batch: round r - 1's plus K-way rankings of round r - 1's PPO policy's samples for
    fresh prompts (round 2's draw is the one earlier sessions measured)."""
    k = SIZES["full"]["k"]
    seed = SEED + 21 + 10 * (r - 2)
    labelers = [SimulatedLabeler(s) for s in range(10, 14)]
    ranked = make_prompts(n_prompts, seed=seed)
    texts = [p.text for p in ranked]
    params = SamplingParams(seed=seed + 1, max_new_tokens=32)
    prev_ppo, prev_batch = round_dirs(run, r - 1)
    from_ppo = sample_texts(prev_ppo, texts, k - 1, params, distinct=True)
    from_sft = sample_texts(run / "sft", texts, 1, SamplingParams(seed=seed + 2, max_new_tokens=32))
    comps = [a + b for a, b in zip(from_ppo, from_sft, strict=True)]
    prov = {"policies": ["ppo"] * (k - 1) + ["sft"]}
    new = ranking_records(ranked, split_by_user(ranked, 0.1, 0.0, seed), comps, labelers, prov)
    old = read_batch(prev_batch)
    return write_batch(
        round_dirs(run, r)[1], sft=old.sft, rankings=old.rankings + new, prompts=old.prompts, batch_id=r + 1
    )


def _reuse(model_dir: Path) -> Path | None:
    """A step's model directory from an earlier invocation (model directories are immutable), or None."""
    if (model_dir / "manifest.json").exists():
        print(f"reusing {model_dir} (delete it to train it again)", flush=True)
        return model_dir
    return None


def train_round(run: Path, r: int, n_prompts: int, cpu: RuntimeConfig) -> tuple[Path, Path, Path]:
    """Round r's (DPO policy, implicit RM, PPO policy), each reused when an earlier invocation made it."""
    out = run / f"round{r}"
    out.mkdir(exist_ok=True)
    batch = round_dirs(run, r)[1]
    if not batch.exists():
        batch = next_round_batch(run, r, n_prompts)
    dpo_cfg = DPOConfig(**{**DPO_SETTINGS, "runtime": cpu})
    dpo = _reuse(out / "dpo") or run_dpo(dpo_cfg, batch, run / "sft", out / "dpo", [Printer(50)])
    demos = read_batch(batch).split("sft", "train")
    rm = _reuse(out / "rm") or write_implicit_reward_model(
        dpo, run / "sft", out / "rm", DPO_SETTINGS["beta"], demos
    )
    (out / "rm-scalar").unlink(missing_ok=True)
    (out / "rm-scalar").symlink_to((run / "rm-scalar").resolve())  # best_of_n prints it beside
    ppo_cfg = settings(SIZES["full"], False)["ppo"]
    ppo_cfg.runtime = cpu
    ppo = _reuse(out / "ppo") or run_ppo(
        ppo_cfg, batch, run / "sft", rm, out / "ppo", [Printer(32)], **PPO_HOOKS
    )
    return dpo, rm, ppo


def main() -> None:
    """Run rounds 2..R and print their policies against round 1's SFT samples."""
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=SIZES["full"]["rm"])
    ap.add_argument("--rounds", type=int, default=2, help="the last round to run (2 or more)")
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be 2 or more")
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cpu = RuntimeConfig(device="cpu", threads=args.threads)
    done = json.loads((run / "samples.json").read_text())
    prompts, samples = done["prompts"], done["samples"]
    params = SamplingParams(**{**EVAL.to_dict(), "seed": SEED + 1234})
    n = SIZES["full"]["samples"]
    both = {k: samples[k] for k in ("SFT", "DPO", "PPO", "best-of-16")}
    for r in range(2, args.rounds + 1):
        dpo, rm, ppo = train_round(run, r, args.prompts, cpu)
        for name, policy in ((f"DPO round {r}", dpo), (f"PPO round {r}", ppo)):
            both[name] = sample_texts(policy, prompts, n, params)
        picks = best_of_n(run / "sft", rm, prompts, SIZES["full"], SEED + 555)
        both.update({f"{k} round {r}": v for k, v in picks.items() if k in ("best-of-4", "best-of-16")})
    rows = policy_rows(prompts, both)
    print("| policy | minus SFT (paired) | win-rate vs SFT (ties half) | made-up | over-refusal | accuracy |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        d, w, b = row["diff_vs_sft"], row["win_vs_sft"], row["behaviour"]
        print(
            f"| {name} | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] | {pct(w)} | "
            f"{pct(b['made_up'])} | {pct(b['over_refusal'])} | {pct(b['accuracy'])} |"
        )


if __name__ == "__main__":
    main()
