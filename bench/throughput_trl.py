"""Worker for bench/training_throughput.py, run inside a TRL venv (bench/setup_trl.sh); prints one JSON line.

    .bench-venvs/trl116/bin/python bench/throughput_trl.py {sft|reward|dpo} --model DIR --data FILE --out DIR
    .bench-venvs/trl112/bin/python bench/throughput_trl.py ppo --model DIR --rm DIR --data FILE --out DIR

TRL gets a fair run on CPU: fp32 (bf16 off), gradient checkpointing off, no logging or saving, the
same batch shapes, lengths, dropout and one epoch as ours. Timing skips the first optimizer step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)


class StepTimes(TrainerCallback):  # type: ignore[misc]
    """Records the time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the time."""
        self.times.append(time.perf_counter())


def common_args(ns: argparse.Namespace) -> dict[str, Any]:
    """Trainer arguments shared by every TRL config."""
    return {
        "output_dir": ns.out,
        "per_device_train_batch_size": ns.batch,
        "learning_rate": 1e-5,
        "num_train_epochs": 1,
        "max_steps": ns.steps,
        "logging_steps": 10_000,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "seed": 0,
        "lr_scheduler_type": "cosine",
        "disable_tqdm": True,
    }


def load_rows(path: str) -> list[dict[str, Any]]:
    """JSON lines."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def time_dpo(
    ns: argparse.Namespace, tok: Any, rows: list[dict[str, Any]], timer: StepTimes
) -> dict[str, Any]:
    """TRL's DPOTrainer on preference pairs; reference log-probs precomputed once, as ours."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model = AutoModelForCausalLM.from_pretrained(ns.model)
    model.config.pad_token_id = tok.pad_token_id
    args = common_args(ns)
    cfg = DPOConfig(max_length=ns.max_length, beta=0.1, precompute_ref_log_probs=True, **args)
    trainer = DPOTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[timer]
    )
    trainer.train()
    secs = timer.times[-1] - timer.times[0]
    steps = len(timer.times) - 1
    return {
        "pairs_per_s": steps * ns.batch / secs,
        "sequences_per_s": steps * 2 * ns.batch / secs,
        "steps": steps,
        "seconds": secs,
        "sequences_per_step": 2 * ns.batch,
    }


def main() -> None:
    """Run one TRL trainer and print measurements."""
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["sft", "reward", "ppo", "dpo"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--rm", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--response-length", type=int, default=32)
    ns = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    from datasets import Dataset

    tok = AutoTokenizer.from_pretrained(ns.model)
    rows = load_rows(ns.data)
    timer = StepTimes()
    res: dict[str, Any] = {"phase": ns.phase, "impl": "trl"}
    import trl

    res["trl_version"] = trl.__version__
    if ns.phase == "sft":
        from trl import SFTConfig, SFTTrainer

        model = AutoModelForCausalLM.from_pretrained(ns.model)
        cfg = SFTConfig(max_length=ns.max_length, packing=False, completion_only_loss=True, **common_args(ns))
        trainer = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            callbacks=[timer],
        )
        trainer.train()
        secs = timer.times[-1] - timer.times[0]
        tokens = 0
        for i in range(ns.batch, ns.batch * len(timer.times), ns.batch):  # steps 2..N, same rows in order
            for r in rows[i : i + ns.batch]:
                tokens += min(ns.max_length, len(tok(r["prompt"] + r["completion"])["input_ids"]) + 1)
        res.update(
            {
                "tokens_per_s": tokens / secs,
                "steps": len(timer.times) - 1,
                "seconds": secs,
                "note": "data order: TRL shuffles; token count from the same number of rows",
            }
        )
    elif ns.phase == "reward":
        from trl import RewardConfig, RewardTrainer

        model = AutoModelForSequenceClassification.from_pretrained(ns.model, num_labels=1)
        model.config.pad_token_id = tok.pad_token_id
        cfg = RewardConfig(max_length=ns.max_length, **common_args(ns))
        trainer = RewardTrainer(
            model=model,
            args=cfg,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            callbacks=[timer],
        )
        trainer.train()
        secs = timer.times[-1] - timer.times[0]
        res.update(
            {
                "pairs_per_s": (len(timer.times) - 1) * ns.batch / secs,
                "steps": len(timer.times) - 1,
                "seconds": secs,
                "sequences_per_step": 2 * ns.batch,
            }
        )
    elif ns.phase == "dpo":
        res.update(time_dpo(ns, tok, rows, timer))
    else:
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        policy = AutoModelForCausalLM.from_pretrained(ns.model)
        ref = AutoModelForCausalLM.from_pretrained(ns.model)
        rm = AutoModelForSequenceClassification.from_pretrained(ns.rm, num_labels=1)
        value = AutoModelForSequenceClassification.from_pretrained(ns.rm, num_labels=1)
        for m in (policy, ref, rm, value):
            m.config.pad_token_id = tok.pad_token_id
        ds = Dataset.from_list([{"input_ids": tok(r["prompt"])["input_ids"]} for r in rows])
        args = common_args(ns)
        args.pop("max_steps")
        args.pop("lr_scheduler_type")
        # TRL 1.12: rollout batch = per_device_train_batch_size * gradient_accumulation_steps, split
        # into num_mini_batches minibatches: 16 rollouts in minibatches of 8, as ours.
        args["per_device_train_batch_size"] = ns.batch
        cfg = PPOConfig(
            num_mini_batches=2,
            total_episodes=ns.episodes,
            num_ppo_epochs=1,
            response_length=ns.response_length,
            temperature=1.0,
            stop_token="eos",  # noqa: S106
            missing_eos_penalty=1.0,
            kl_coef=0.02,
            local_rollout_forward_batch_size=ns.batch,
            num_sample_generations=0,
            **args,
        )
        trainer = PPOTrainer(
            args=cfg,
            processing_class=tok,
            model=policy,
            ref_model=ref,
            reward_model=rm,
            train_dataset=ds,
            value_model=value,
            callbacks=[timer],
        )
        trainer.train()
        secs = timer.times[-1] - timer.times[0]
        res.update(
            {
                "episodes_per_s": (len(timer.times) - 1) * ns.batch / secs,
                "steps": len(timer.times) - 1,
                "seconds": secs,
            }
        )
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
