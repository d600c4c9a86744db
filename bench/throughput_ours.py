"""Worker for bench/training_throughput.py: times one phase of this library; prints one JSON line.

python -m bench.throughput_ours {sft|reward|ppo|dpo|sample} --model DIR --data DIR --out DIR --seconds S

Each phase runs until its timed window (bench/windows.py: warm-up excluded, then `--seconds`) is
complete; training phases are stopped by a callback, so nothing is written out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from typing import Any

import torch

from bench.windows import Profile, Window
from training.callbacks import StopTraining
from training.config import DPOConfig, PPOConfig, RewardConfig, RuntimeConfig, SamplingParams, SFTConfig

ADAMW = {"betas": (0.9, 0.999), "weight_decay": 0.0, "max_grad_norm": 1.0}  # TRL's Trainer defaults
EPOCHS = 1000  # more than any window needs; the window stops the stage


PAIRS: dict[str, float] = {"pairs": 0.0}  # comparison pairs in the reward-model steps so far


def counting_pairs(loss_fn: Any) -> Any:
    """Wrap the reward model's loss_fn to count the pairs of every batch it sees."""

    def wrapped(model: Any, batch: dict[str, torch.Tensor]) -> Any:
        PAIRS["pairs"] += batch["winners"].numel()
        return loss_fn(model, batch)

    return wrapped


class WindowCallback:
    """Ticks the window at every progress report (with `unit` from the metrics or a counter) and stops it."""

    def __init__(
        self,
        win: Window,
        unit: str | None = None,
        counter: dict[str, float] | None = None,
        per_step: dict[str, float] | None = None,
    ) -> None:
        self.win, self.unit, self.counter, self.per_step = win, unit, counter, per_step or {}
        self.seen = 0.0

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """One step done."""
        units = dict(self.per_step)
        if self.unit and self.counter is not None:
            units[self.unit] = self.counter[self.unit] - self.seen
            self.seen = self.counter[self.unit]
        elif self.unit:
            units[self.unit] = float(metrics[self.unit])
        self.win.tick(**units)

    def should_stop(self) -> bool:
        """Stop once the window is complete."""
        return self.win.done()


def run_stage(fn: Any, *args: Any) -> None:
    """Run a stage until the window's callback stops it."""
    with contextlib.suppress(StopTraining):
        fn(*args)


def train_phase(args: argparse.Namespace, rt: RuntimeConfig, win: Window) -> None:
    """SFT, reward model, DPO or PPO on the batch until the window is complete."""
    if args.phase == "sft":
        from training.sft import run_sft

        cfg: Any = SFTConfig(
            epochs=EPOCHS,
            batch_size=args.batch,
            max_length=args.max_length,
            select_by="last",
            eval_every_epoch=False,
            dropout=args.dropout,
            runtime=rt,
            **ADAMW,
        )
        run_stage(run_sft, cfg, args.data, args.model, args.out, [WindowCallback(win)])
    elif args.phase == "reward":
        from training import reward
        from training.reward import run_reward

        reward.rm_step_loss = counting_pairs(reward.rm_step_loss)  # type: ignore[assignment]
        cfg = RewardConfig(
            epochs=EPOCHS, batch_size=args.batch, max_length=args.max_length, runtime=rt, **ADAMW
        )
        run_stage(run_reward, cfg, args.data, args.model, args.out, [WindowCallback(win, "pairs", PAIRS)])
    elif args.phase == "dpo":
        from training.dpo import run_dpo

        cfg = DPOConfig(
            epochs=EPOCHS,
            batch_size=args.batch,
            max_length=args.max_length,
            warmup_steps=0,
            lr=1e-5,
            grouped=not args.pairs,
            eval_every_epoch=False,  # TRL's DPOTrainer has no eval set here: the same work on both sides
            runtime=rt,
        )
        run_stage(run_dpo, cfg, args.data, args.model, args.out, [WindowCallback(win, "pairs")])
    else:
        from training.ppo import run_ppo

        cfg = PPOConfig(
            total_episodes=10**7,
            rollout_batch_size=args.batch,
            minibatch_size=args.batch // 2,
            max_new_tokens=args.response_length,
            ema_decay=None,
            runtime=rt,
            **(
                {"advantage_estimator": "rloo", "n_samples_per_prompt": args.rloo, "whiten_advantages": False}
                if args.rloo
                else {}
            ),
        )
        cb = WindowCallback(win, per_step={"episodes": float(args.batch)})
        run_stage(run_ppo, cfg, args.data, args.model, args.rm, args.out, [cb])


def sample_phase(args: argparse.Namespace, win: Window) -> None:
    """Rounds of K completions for each of the prompts until the window is complete."""
    from training.data import read_batch
    from training.generate import Sampler

    prompts = [r["prompt"] for r in read_batch(args.data).prompts[: args.prompts]]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.response_length, seed=0)
    s = Sampler(args.model, device="cpu")
    while not win.done():
        comps = s.sample(prompts, args.k, params)
        tokens = sum(len(c.token_ids) for row in comps for c in row)
        win.tick(completions=len(prompts) * args.k, new_tokens=tokens)


def main() -> None:
    """Run one phase and print its measurements as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["sft", "reward", "ppo", "dpo", "sample"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--rm", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--response-length", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.2, help="sft: residual dropout (our default)")
    ap.add_argument("--pairs", action="store_true", help="dpo: one element per pair instead of per prompt")
    ap.add_argument("--rloo", type=int, default=0, help="ppo: leave-one-out baseline over K answers (0: GAE)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    rt = RuntimeConfig(device="cpu", mixed_precision="no")
    Profile.install(args.model)
    win = Window(args.seconds, *((1, 0.0) if args.phase == "sample" else ()))  # one warm-up round
    if args.phase == "sample":
        sample_phase(args, win)
    else:
        train_phase(args, rt, win)
    res: dict[str, Any] = {"phase": args.phase, "impl": "ours", **win.result()}
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
