"""Throughput against TRL, side by side in one run on the same model, data and lengths (CPU, fp32).

    bench/setup_trl.sh                     # once: TRL 1.16 and 1.12 venvs under .bench-venvs/
    python -m bench.training_throughput    # prints the table

Phases: SFT tokens/s (ours vs TRL 1.16 SFTTrainer); reward model at K = 9 in comparison pairs/s
(ours: each completion forwarded once per prompt; TRL 1.16 RewardTrainer forwards every pair);
PPO episodes/s (ours vs TRL 1.12 trl.experimental.ppo.PPOTrainer); sampling K completions per prompt
(ours: prompt computed once, KV cache, batched; peer: one `generate` call per completion); DPO at
K = 4 and 9 in pairs/s and sequences/s (ours grouped and per pair vs TRL 1.16 DPOTrainer,
bench/throughput_dpo.py; `--only dpo` runs just those rows).
Each measurement runs in its own process (peak RSS per process); model FLOP/s is reported as a
fraction of this machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
K = 9


def matmul_peak_flops(seconds: float = 3.0, n: int = 1024) -> float:
    """Measured fp32 matmul FLOP/s with 2 threads."""
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
    pairs = []
    for g in group_comparisons(rankings, []):
        for w, lo in g.pairs:
            pairs.append(
                {
                    "prompt": format_prompt(g.prompt),
                    "chosen": " " + g.completions[w],
                    "rejected": " " + g.completions[lo],
                }
            )
    dump("trl_pairs", pairs)
    dump("trl_prompts", [{"prompt": format_prompt(p.text)} for p in prompts])
    return files


def run_worker(cmd: list[str], timeout: int = 1800) -> dict[str, Any]:
    """Run a worker process and return its RESULT JSON (or the error)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print("$ " + " ".join(cmd), flush=True)
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[7:])
            res["wall_s"] = time.time() - t
            print(f"  -> {res}", flush=True)
            return res
    print(r.stderr[-3000:], flush=True)
    return {"error": (r.stderr or r.stdout)[-500:]}


def mean_tokens(model_dir: Path, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> float:
    """Average tokens per sequence of prompt + each key's text."""
    from training.models import load_tokenizer

    tok = load_tokenizer(model_dir)
    lens = [len(tok(r["prompt"] + r[k])["input_ids"]) + 1 for r in rows[:500] for k in keys]
    return sum(lens) / len(lens)


def main() -> None:
    """Run every phase for both implementations and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".bench/throughput")
    ap.add_argument("--cache", default=".bench/models")
    ap.add_argument("--venvs", default=str(ROOT / ".bench-venvs"))
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["all", "dpo"], default="all", help="dpo: only the DPO rows")
    args = ap.parse_args()
    from training.models import count_params, ensure_base_model, load_policy

    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    steps = 4 if args.quick else args.steps
    # The demo architecture with untrained weights: throughput does not depend on them, and an untrained
    # model never emits EOS, so every implementation generates exactly the same number of tokens.
    model = ensure_base_model(args.cache, args.size, steps=0)
    n_params = count_params(load_policy(model)[0])
    load_start = os.getloadavg()
    peak = matmul_peak_flops()
    if args.only == "dpo":
        run_dpo_rows(args, model, root, steps, n_params, peak, load_start)
        return
    files = build_data(root, n_prompts=(steps + 1) * 8)  # ours: one SFT epoch = steps + 1 batches of 8
    py, trl116, trl112 = sys.executable, f"{args.venvs}/trl116/bin/python", f"{args.venvs}/trl112/bin/python"
    sft_batch, rm_groups, ppo_batch, episodes = 8, 4, 16, (32 if args.quick else 96)
    res: dict[str, dict[str, Any]] = {}
    common = ["--model", str(model), "--max-length", "128"]
    res["sft_ours"] = run_worker(
        [
            py,
            "-m",
            "bench.throughput_ours",
            "sft",
            *common,
            "--data",
            str(files["batch"]),
            "--out",
            str(root / "o_sft"),
            "--steps",
            str(steps),
            "--batch",
            str(sft_batch),
        ]
    )
    res["sft_trl"] = run_worker(
        [
            trl116,
            "bench/throughput_trl.py",
            "sft",
            *common,
            "--data",
            str(files["trl_sft"]),
            "--out",
            str(root / "t_sft"),
            "--steps",
            str(steps),
            "--batch",
            str(sft_batch),
        ]
    )
    # equal sequences forwarded per step: ours 4 prompts x 9 completions = 36; TRL 18 pairs x 2 = 36
    res["rm_ours"] = run_worker(
        [
            py,
            "-m",
            "bench.throughput_ours",
            "reward",
            *common,
            "--data",
            str(files["batch"]),
            "--out",
            str(root / "o_rm"),
            "--batch",
            str(rm_groups),
            "--k",
            str(K),
        ]
    )
    res["rm_trl"] = run_worker(
        [
            trl116,
            "bench/throughput_trl.py",
            "reward",
            *common,
            "--data",
            str(files["trl_pairs"]),
            "--out",
            str(root / "t_rm"),
            "--steps",
            str(steps),
            "--batch",
            str(rm_groups * K // 2),
        ]
    )
    rm_dir = root / "o_rm"
    ppo_common = [
        *common,
        "--rm",
        str(rm_dir),
        "--episodes",
        str(episodes),
        "--batch",
        str(ppo_batch),
        "--response-length",
        "32",
    ]
    res["ppo_ours"] = run_worker(
        [
            py,
            "-m",
            "bench.throughput_ours",
            "ppo",
            *ppo_common,
            "--data",
            str(files["batch"]),
            "--out",
            str(root / "o_ppo"),
        ]
    )
    res["ppo_trl"] = run_worker(
        [
            trl112,
            "bench/throughput_trl.py",
            "ppo",
            *ppo_common,
            "--data",
            str(files["trl_prompts"]),
            "--out",
            str(root / "t_ppo"),
        ]
    )
    for phase in ("sample", "sample_naive"):
        res[phase] = run_worker(
            [
                py,
                "-m",
                "bench.throughput_ours",
                phase,
                "--model",
                str(model),
                "--data",
                str(files["batch"]),
                "--out",
                str(root / phase),
                "--k",
                str(K),
                "--prompts",
                "8" if args.quick else "24",
                "--response-length",
                "32",
            ]
        )
    pair_rows = [json.loads(line) for line in files["trl_pairs"].read_text().splitlines()]
    seq_tokens = mean_tokens(model, pair_rows, ("chosen", "rejected"))
    report(res, peak, n_params, seq_tokens, load_start, root)
    run_dpo_rows(args, model, root, steps, n_params, peak, os.getloadavg())


def run_dpo_rows(
    args: argparse.Namespace,
    model: Path,
    root: Path,
    steps: int,
    n_params: int,
    peak: float,
    load_start: tuple[float, float, float],
) -> None:
    """Time and print the DPO rows (ours grouped and per pair vs TRL 1.16 DPOTrainer at K = 4 and 9)."""
    from bench.throughput_dpo import report_dpo, run_dpo_phases

    res = run_dpo_phases(run_worker, model, root, sys.executable, f"{args.venvs}/trl116/bin/python", steps)
    threads = os.environ.get("BENCH_THREADS", "1")
    print(
        f"\nmodel: {n_params / 1e6:.2f}M params, fp32, {threads} thread(s); "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s; "
        f"load average at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    report_dpo(res)
    (root / "results_dpo.json").write_text(json.dumps(res, indent=2))


def _get(r: dict[str, Any], key: str) -> float:
    return float(r.get(key, float("nan")))


def report(
    res: dict[str, dict[str, Any]],
    peak: float,
    n_params: int,
    seq_tokens: float,
    load_start: tuple[float, float, float],
    root: Path,
) -> None:
    """Print the comparison table and write results.json."""
    pairs_per_seq_ours = (K - 1) / 2  # 36 pairs from 9 sequences
    rows = [
        ("SFT tokens/s", "sft_ours", "sft_trl", "tokens_per_s", 1.0, "TRL 1.16 SFTTrainer"),
        ("RM pairs/s (K=9)", "rm_ours", "rm_trl", "pairs_per_s", 4.0, "TRL 1.16 RewardTrainer"),
        ("PPO episodes/s", "ppo_ours", "ppo_trl", "episodes_per_s", 1.5, "TRL 1.12 experimental PPOTrainer"),
        (
            "sampling completions/s (K=9)",
            "sample",
            "sample_naive",
            "completions_per_s",
            1.5,
            "HF generate per completion",
        ),
    ]
    threads = os.environ.get("BENCH_THREADS", "1")
    mfu = {
        "sft_ours": 6 * n_params * _get(res["sft_ours"], "tokens_per_s"),
        "sft_trl": 6 * n_params * _get(res["sft_trl"], "tokens_per_s"),
        "rm_ours": 6 * n_params * _get(res["rm_ours"], "pairs_per_s") / pairs_per_seq_ours * seq_tokens,
        "rm_trl": 6 * n_params * _get(res["rm_trl"], "pairs_per_s") * 2 * seq_tokens,
    }
    print(
        f"\nmodel: {n_params / 1e6:.2f}M params, fp32, {threads} thread(s); "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s; "
        f"load average at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    print(
        "| phase | ours | peer | peer is | ratio | target | | peak RSS ours / peer (MiB) | MFU ours / peer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, a, b, key, target, peer in rows:
        x, y = _get(res[a], key), _get(res[b], key)
        ratio = x / y if y == y and y > 0 else float("nan")
        ok = "PASS" if ratio >= target else "MISS"
        m = f"{100 * mfu[a] / peak:.1f} % / {100 * mfu[b] / peak:.1f} %" if a in mfu else "-"
        print(
            f"| {name} | {x:.1f} | {y:.1f} | {peer} | {ratio:.2f}x | >= {target}x | {ok} | "
            f"{_get(res[a], 'peak_rss_mb'):.0f} / {_get(res[b], 'peak_rss_mb'):.0f} | {m} |"
        )
    (root / "results.json").write_text(
        json.dumps(
            {"results": res, "matmul_peak_flops": peak, "n_params": n_params, "mfu_flops": mfu}, indent=2
        )
    )


if __name__ == "__main__":
    main()
