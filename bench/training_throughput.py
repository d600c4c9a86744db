"""Throughput against TRL, side by side in one run on the same model, data and lengths (CPU, fp32).

    bench/setup_trl.sh                                   # once: TRL 1.16 and 1.12 venvs under .bench-venvs/
    python -m bench.training_throughput                  # the table (about 17 minutes on 2 cores)
    python -m bench.training_throughput --seconds 3 --rounds 1 --only sft,rm   # a smoke test

Phases: SFT (tokens/s, TRL 1.16 SFTTrainer), reward model at K = 9 (pairs/s and sequences/s,
RewardTrainer), sampling K = 9 completions for 64 prompts of 32 tokens (ours against HF
`generate(..., num_return_sequences=9)` over batches of 16 prompts), DPO at K = 9 (pairs/s and
sequences/s, DPOTrainer), online RL (episodes/s; ours PPO against TRL 1.16 RLOOTrainer and TRL 1.12's
experimental PPOTrainer; online-rloo: our PPO with the quick preset's leave-one-out baseline, k = 4,
against RLOOTrainer at k = 4). Every measurement is its own process with a warm-up and then a timed window
of `--seconds` (bench/windows.py); the sides of a phase alternate (ABAB...) for `--rounds` rounds and
the table prints each side's median and min-max, the ratio of medians, the load average, the MFU
(6 x parameters x trained tokens/s over this machine's measured fp32 matmul peak) and, beside it, the
per-phase profile (share of the window in generate, forwards with and without grad, backward,
optimizer, other) of each side's median run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
K = 9


@dataclass
class Phase:
    """Sides (label, command) of one comparison, the units shown and each unit's target ratio."""

    name: str
    sides: list[tuple[str, list[str]]]
    units: list[str]
    targets: dict[str, float] = field(default_factory=dict)
    mfu: bool = False


def matmul_peak_flops(seconds: float = 3.0, n: int = 1024) -> float:
    """Measured fp32 matmul FLOP/s with BENCH_THREADS threads."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t, reps = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t)


def build_data(root: Path, n_prompts: int, seed: int = 0) -> dict[str, Path]:
    """An export batch (demonstrations, K = 9 rankings, prompts) plus TRL-format JSONL of the same rows."""
    from training.chat import render_default
    from training.data import group_comparisons, write_batch
    from training.world import SimulatedLabeler, candidate_completions, make_prompts
    from training.world.simulate import demonstration_records, prompt_records, ranking_records

    prompts = make_prompts(n_prompts, seed=seed)
    splits = ["train"] * len(prompts)
    labelers = [SimulatedLabeler(s) for s in range(3)]
    rng = random.Random(seed)
    comps = [candidate_completions(p, K, rng) for p in prompts]
    sft = demonstration_records(prompts, splits, labelers)
    rankings = ranking_records(prompts, splits, comps, labelers)
    batch = write_batch(root / "batch", sft=sft, rankings=rankings, prompts=prompt_records(prompts, splits))
    files = {"batch": batch}

    def format_prompt(text: str) -> str:  # the prompt as our stages render it (the chat template), as text
        return render_default([{"role": "user", "content": text}], add_generation_prompt=True)

    def dump(name: str, rows: list[dict[str, Any]]) -> None:
        files[name] = root / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))

    dump(
        "trl_sft", [{"prompt": format_prompt(r["prompt"]), "completion": " " + r["completion"]} for r in sft]
    )
    pairs = [
        {
            "prompt": format_prompt(g.prompt),
            "chosen": " " + g.completions[w],
            "rejected": " " + g.completions[lo],
        }
        for g in group_comparisons(rankings, [])
        for w, lo in g.pairs
    ]
    rng.shuffle(pairs)
    dump("trl_pairs", pairs[:3000])  # more than a window needs; TRL tokenises its whole dataset at start
    dump("trl_prompts", [{"prompt": format_prompt(p.text)} for p in prompts])
    return files


def save_reward_model(model: Path, out: Path) -> Path:
    """An (untrained) reward model from the base model, in our format, for the online phase."""
    from training.models import reward_model_from_lm

    rm, tok = reward_model_from_lm(model)
    rm.save_files(out, tok)
    return out


def run_worker(cmd: list[str], timeout: int = 600) -> dict[str, Any]:
    """Run a worker process and return its RESULT JSON (or the error)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[7:])
            res["wall_s"] = round(time.time() - t, 1)
            return res
    print("$ " + " ".join(cmd) + "\n" + r.stderr[-3000:], flush=True)
    return {"error": (r.stderr or r.stdout)[-500:]}


def phases(args: argparse.Namespace, model: Path, root: Path) -> list[Phase]:
    """Every comparison, its sides' commands, units and targets."""
    files = build_data(root / "data", n_prompts=400)
    dpo = __import__("bench.throughput_dpo", fromlist=["build_rankings"]).build_rankings(root / "dpo", K, 40)
    rm = save_reward_model(model, root / "rm")
    py, t116, t112 = sys.executable, f"{args.venvs}/trl116/bin/python", f"{args.venvs}/trl112/bin/python"
    ours = [py, "-m", "bench.throughput_ours"]
    trl = ["bench/throughput_trl.py"]
    c = [
        "--model",
        str(model),
        "--max-length",
        "128",
        "--seconds",
        str(args.seconds),
        "--out",
        str(root / "o"),
    ]
    online = [*c, "--rm", str(rm), "--batch", "16", "--response-length", "32"]
    sample = [*c, "--k", str(K), "--prompts", "64", "--response-length", "32"]
    batch, prompts, pairs = str(files["batch"]), str(files["trl_prompts"]), str(files["trl_pairs"])
    return [
        Phase(
            "sft",
            [
                ("ours", [*ours, "sft", *c, "--data", batch, "--batch", "8"]),
                (
                    "TRL 1.16 SFTTrainer",
                    [t116, *trl, "sft", *c, "--data", str(files["trl_sft"]), "--batch", "8"],
                ),
            ],
            ["tokens"],
            {"tokens": 1.2},
            mfu=True,
        ),
        Phase(
            "rm",  # equal sequences per step: ours 4 prompts x 9 completions = 36; TRL 18 pairs x 2 = 36
            [
                ("ours", [*ours, "reward", *c, "--data", batch, "--batch", "4", "--k", str(K)]),
                ("TRL 1.16 RewardTrainer", [t116, *trl, "reward", *c, "--data", pairs, "--batch", "18"]),
            ],
            ["pairs", "sequences", "tokens"],
            {"pairs": 4.0, "sequences": 1.0},
            mfu=True,
        ),
        Phase(
            "sampling",
            [
                ("ours", [*ours, "sample", *sample, "--data", batch]),
                (
                    "HF generate(num_return_sequences=9), 16 prompts/call",
                    [t116, *trl, "generate", *sample, "--data", prompts],
                ),
            ],
            ["completions"],
            {"completions": 1.5},
        ),
        Phase(
            "dpo",
            [
                (
                    "ours (grouped)",
                    [*ours, "dpo", *c, "--data", str(dpo["batch"]), "--batch", "4", "--k", str(K)],
                ),
                (
                    "TRL 1.16 DPOTrainer",
                    [t116, *trl, "dpo", *c, "--data", str(dpo["trl_pairs"]), "--batch", "18"],
                ),
            ],
            ["pairs", "sequences", "tokens"],
            mfu=True,
        ),
        Phase(
            "online",
            [
                ("ours PPO", [*ours, "ppo", *online, "--data", batch]),
                ("TRL 1.16 RLOOTrainer", [t116, *trl, "rloo", *online, "--data", prompts]),
                ("TRL 1.12 PPOTrainer (experimental)", [t112, *trl, "ppo", *online, "--data", prompts]),
            ],
            ["episodes"],
        ),
        Phase(  # the quick preset's PPO: no value model, 4 answers per prompt, as TRL's RLOO above
            "online-rloo",
            [
                ("ours PPO, rloo k=4", [*ours, "ppo", *online, "--data", batch, "--rloo", "4"]),
                ("TRL 1.16 RLOOTrainer", [t116, *trl, "rloo", *online, "--data", prompts]),
            ],
            ["episodes"],
        ),
    ]


def run_phase(phase: Phase, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Alternate the sides (ABAB...) for `rounds` rounds; every run's result, by side."""
    out: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in phase.sides}
    for r in range(rounds):
        for label, cmd in phase.sides:
            res = run_worker(cmd)
            out[label].append(res)
            shown = {
                k: (round(v, 1) if isinstance(v, float) else v)
                for k, v in res.items()
                if k.endswith("_per_s")
            }
            print(
                f"  {phase.name} round {r + 1} {label}: {shown} load {res.get('load')} "
                f"wall {res.get('wall_s')} s",
                flush=True,
            )
    return out


def stats(runs: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    """Median, min and max of key over the runs that have it (nan when none)."""
    xs = [float(r[key]) for r in runs if key in r]
    return (statistics.median(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose key is the median (for its profile)."""
    ok = sorted((r for r in runs if key in r), key=lambda r: r[key])
    return ok[len(ok) // 2] if ok else {}


def cpu_ratio(ours: list[dict[str, Any]], peer: list[dict[str, Any]], unit: str) -> str:
    """Ratio of the medians per second of each process's own CPU time (what other load on a shared
    machine moves least), and the min-max of the per-round ratios (round i of ours against round i)."""
    key = f"{unit}_per_cpu_s"
    a, b = stats(ours, key)[0], stats(peer, key)[0]
    if not b > 0:
        return "-"
    rounds = [o[key] / p[key] for o, p in zip(ours, peer, strict=False) if key in o and p.get(key)]
    spread = f" ({min(rounds):.2f}-{max(rounds):.2f})" if rounds else ""
    return f"{a / b:.2f}x{spread}"


def fmt(x: float) -> str:
    """A rate, with sensible digits."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def report(
    res: dict[str, dict[str, list[dict[str, Any]]]], plist: list[Phase], peak: float, n_params: int
) -> None:
    """Print the comparison table (medians, min-max, ratio of medians, MFU) and the profile beside it."""
    print(
        "| phase | unit (/s) | ours: median (min-max) | peer | peer: median (min-max) | ratio | target | "
        "| ratio per CPU-s (min-max of rounds) | MFU ours / peer | peak RSS ours / peer (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for ph in plist:
        ours_label, ours_runs = ph.sides[0][0], res[ph.name][ph.sides[0][0]]
        for peer, _ in ph.sides[1:]:
            runs = res[ph.name][peer]
            for unit in ph.units:
                key = f"{unit}_per_s"
                a, b = stats(ours_runs, key), stats(runs, key)
                ratio = a[0] / b[0] if b[0] > 0 else float("nan")
                target = ph.targets.get(unit)
                verdict = "-" if target is None else ("PASS" if ratio >= target else "MISS")
                mfu = "-"
                if ph.mfu and unit == "tokens":
                    mfu = (
                        f"{100 * 6 * n_params * a[0] / peak:.1f} % / {100 * 6 * n_params * b[0] / peak:.1f} %"
                    )
                rss = f"{stats(ours_runs, 'peak_rss_mb')[0]:.0f} / {stats(runs, 'peak_rss_mb')[0]:.0f}"
                print(
                    f"| {ph.name} | {unit} | {fmt(a[0])} ({fmt(a[1])}-{fmt(a[2])}) | {peer} | "
                    f"{fmt(b[0])} ({fmt(b[1])}-{fmt(b[2])}) | {ratio:.2f}x | "
                    f"{'' if target is None else f'>= {target}x'} | {verdict} | "
                    f"{cpu_ratio(ours_runs, runs, unit)} | {mfu} | {rss} |"
                )
        del ours_label
    keys = ["generate", "forward_train", "forward_nograd", "backward", "optimizer", "other"]
    print("\nProfile: share of the timed window (median run of each side)")
    print(
        "| phase | side | generate | forward (grad) | forward (no grad) | backward | optimizer | other "
        "(batching, loss, Python) | load during runs |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for ph in plist:
        for label, _ in ph.sides:
            runs = res[ph.name][label]
            prof = median_run(runs, f"{ph.units[0]}_per_s").get("profile_pct", {})
            loads = [x for r in runs for x in r.get("load", [])]
            load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
            cells = " | ".join(f"{prof[k]:.0f} %" if k in prof else "-" for k in keys)
            print(f"| {ph.name} | {label} | {cells} | {load} |")


def main() -> None:
    """Run every phase, sides alternating, and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".bench/throughput")
    ap.add_argument("--cache", default=".bench/models")
    ap.add_argument("--venvs", default=str(ROOT / ".bench-venvs"))
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--seconds", type=float, default=20.0, help="timed window per run (after warm-up)")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of ours and the peers per phase")
    ap.add_argument("--only", default="sft,rm,sampling,dpo,online,online-rloo", help="comma list of phases")
    args = ap.parse_args()
    t0 = time.time()
    from training.models import count_params, load_policy
    from training.world.base import ensure_base_model

    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    # The demo architecture with untrained weights: throughput does not depend on them, and an untrained
    # model never emits EOS, so every implementation generates exactly the same number of tokens.
    model = ensure_base_model(args.cache, args.size, steps=0)
    n_params = count_params(load_policy(model)[0])
    load_start = os.getloadavg()
    peak = matmul_peak_flops()
    wanted = args.only.split(",")
    plist = [p for p in phases(args, model, root) if p.name in wanted]
    res = {}
    for ph in plist:
        print(
            f"phase {ph.name}: {args.rounds} rounds x {len(ph.sides)} sides x {args.seconds:.0f} s",
            flush=True,
        )
        res[ph.name] = run_phase(ph, args.rounds)
    threads = os.environ.get("BENCH_THREADS", "1")
    print(
        f"\nmodel: {n_params / 1e6:.2f}M params, fp32, {threads} thread(s); "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s; "
        f"{args.rounds} alternations x {args.seconds:.0f} s windows; load average (1 min) at start "
        f"{load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs; "
        f"whole run {(time.time() - t0) / 60:.1f} min"
    )
    report(res, plist, peak, n_params)
    (root / "results.json").write_text(
        json.dumps({"results": res, "matmul_peak_flops": peak, "n_params": n_params}, indent=2)
    )


if __name__ == "__main__":
    main()
