"""Worker for bench/training_throughput.py: times one phase of this library; prints one JSON line.

python -m bench.throughput_ours {sft|reward|ppo|dpo|sample} --model DIR --data DIR --out DIR [...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch

from training.config import DPOConfig, PPOConfig, RewardConfig, RuntimeConfig, SamplingParams, SFTConfig


class StepTimer:
    """Callback that records the wall-clock time of every progress report."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.metrics: list[dict[str, Any]] = []

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Record the time of each step."""
        self.times.append(time.perf_counter())
        self.metrics.append(dict(metrics))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def steady(timer: StepTimer, skip: int = 1) -> tuple[int, float]:
    """(steps, seconds) after the first `skip` steps (warm-up excluded)."""
    t = timer.times
    return len(t) - 1 - (skip - 1), t[-1] - t[skip - 1]


class StopAfter(StepTimer):
    """A StepTimer that stops the stage after `limit` steps (only the timings are wanted)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def should_stop(self) -> bool:
        """True once `limit` steps have run."""
        return len(self.times) >= self.limit


def time_dpo(args: argparse.Namespace, rt: RuntimeConfig) -> dict[str, Any]:
    """DPO steps on the batch: grouped (args.batch prompts of K per step) or per pair (args.batch pairs)."""
    from training.callbacks import StopTraining
    from training.dpo import run_dpo

    timer = StopAfter(args.steps + 1)
    cfg = DPOConfig(
        batch_size=args.batch,
        max_length=args.max_length,
        warmup_steps=0,
        lr=1e-5,
        grouped=not args.pairs,
        runtime=rt,
    )
    with contextlib.suppress(StopTraining):  # the timer stops the stage after the timed steps
        run_dpo(cfg, args.data, args.model, Path(args.out), [timer])
    steps, secs = steady(timer)
    pairs = sum(m["pairs"] for m in timer.metrics[1:])
    per_step = 2 * args.batch if args.pairs else args.batch * args.k
    return {
        "pairs_per_s": pairs / secs,
        "sequences_per_s": steps * per_step / secs,
        "steps": steps,
        "seconds": secs,
        "sequences_per_step": per_step,
    }


def main() -> None:
    """Run one phase and print its measurements as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["sft", "reward", "ppo", "dpo", "sample", "sample_naive"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--rm", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--response-length", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--pairs", action="store_true", help="dpo: one element per pair instead of per prompt")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    rt = RuntimeConfig(device="cpu", mixed_precision="no")
    timer = StepTimer()
    out = Path(args.out)
    res: dict[str, Any] = {"phase": args.phase, "impl": "ours"}
    if args.phase == "sft":
        from training.data import read_batch
        from training.sft import run_sft

        n = args.steps * args.batch
        rows = read_batch(args.data).split("sft", "train")[:n]
        cfg = SFTConfig(
            epochs=1, batch_size=args.batch, max_length=args.max_length, select_by="last", runtime=rt
        )
        run_sft(cfg, args.data, args.model, out, [timer])
        from training.batching import sft_batch
        from training.models import load_tokenizer

        tok = load_tokenizer(args.model)
        per_step = [
            int(sft_batch(tok, rows[i : i + args.batch], args.max_length)["attention_mask"].sum())
            for i in range(0, len(rows), args.batch)
        ]
        steps, secs = steady(timer)
        res.update({"tokens_per_s": sum(per_step[1:]) / secs, "steps": steps, "seconds": secs})
    elif args.phase == "reward":
        from training.reward import run_reward

        run_reward(
            RewardConfig(batch_size=args.batch, max_length=args.max_length, runtime=rt),
            args.data,
            args.model,
            out,
            [timer],
        )
        steps, secs = steady(timer)
        pairs = sum(m["pairs"] for m in timer.metrics[1:])
        res.update(
            {
                "pairs_per_s": pairs / secs,
                "steps": steps,
                "seconds": secs,
                "sequences_per_step": args.batch * args.k,
            }
        )
    elif args.phase == "ppo":
        from training.ppo import run_ppo

        cfg = PPOConfig(
            total_episodes=args.episodes,
            rollout_batch_size=args.batch,
            minibatch_size=args.batch // 2,
            max_new_tokens=args.response_length,
            ema_decay=None,
            runtime=rt,
        )
        run_ppo(cfg, args.data, args.model, args.rm, out, [timer])
        steps, secs = steady(timer)
        res.update(
            {
                "episodes_per_s": steps * args.batch / secs,
                "steps": steps,
                "seconds": secs,
                "mean_response_tokens": sum(m["response_length"] for m in timer.metrics) / len(timer.metrics),
            }
        )
    elif args.phase == "dpo":
        res.update(time_dpo(args, rt))
    else:
        from training.data import read_batch
        from training.generate import Sampler, generate_per_completion

        prompts = [r["prompt"] for r in read_batch(args.data).prompts[: args.prompts]]
        params = SamplingParams(temperature=1.0, max_new_tokens=args.response_length, seed=0)
        s = Sampler(args.model, device="cpu")
        s.sample(prompts[:2], 2, params)  # warm-up
        t = time.perf_counter()
        if args.phase == "sample":
            comps = s.sample(prompts, args.k, params)
            tokens = sum(len(c.token_ids) for row in comps for c in row)
        else:
            texts = generate_per_completion(s.model, s.tokenizer, prompts, args.k, params)
            tokens = sum(len(s.tokenizer(c)["input_ids"]) + 1 for row in texts for c in row)
        secs = time.perf_counter() - t
        res.update(
            {
                "completions_per_s": len(prompts) * args.k / secs,
                "seconds": secs,
                "tokens_per_completion": tokens / (len(prompts) * args.k),
            }
        )
    res["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
