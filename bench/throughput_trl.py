"""Worker for bench/training_throughput.py, run inside a TRL venv (bench/setup_trl.sh); prints one JSON line.

    .bench-venvs/trl116/bin/python bench/throughput_trl.py {sft|reward|dpo|rloo|generate} --model DIR ...
    .bench-venvs/trl112/bin/python bench/throughput_trl.py ppo --model DIR --rm DIR --data FILE --out DIR

TRL gets a fair run on CPU: fp32 (bf16 off), gradient checkpointing off, no logging or saving, the
same batch shapes, lengths and dropout as ours, and the same optimizer as ours (fused AdamW, betas
0.9/0.999, eps 1e-8, no weight decay, gradient norm clipped at 1; PPO: eps 1e-5 as ours). Each
trainer runs until its timed window (bench/windows.py: warm-up excluded, then `--seconds`) is done.
`generate` is the sampling peer: HF `generate(..., num_return_sequences=K)` over batches of prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)

from bench.windows import Profile, Window, WindowDone


class WindowTicks(TrainerCallback):  # type: ignore[misc]
    """Ticks the window at the end of every optimizer step and leaves the loop once it is complete."""

    def __init__(self, win: Window, per_step: dict[str, float]) -> None:
        self.win, self.per_step = win, per_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """One optimizer step done."""
        self.win.tick(**self.per_step)
        if self.win.done():
            raise WindowDone


def common_args(ns: argparse.Namespace) -> dict[str, Any]:
    """Trainer arguments shared by every TRL config."""
    return {
        "output_dir": ns.out,
        "per_device_train_batch_size": ns.batch,
        "learning_rate": 1e-5,
        "num_train_epochs": 1000,
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
        "optim": "adamw_torch_fused",
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
    }


def load_rows(path: str) -> list[dict[str, Any]]:
    """JSON lines."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train(trainer: Any) -> None:
    """Train until the window callback raises WindowDone."""
    with contextlib.suppress(WindowDone):
        trainer.train()


def supervised(ns: argparse.Namespace, tok: Any, rows: list[dict[str, Any]], win: Window) -> None:
    """SFTTrainer, RewardTrainer or DPOTrainer (reference log-probs precomputed once, as ours)."""
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    args = common_args(ns)
    if ns.phase == "sft":
        from trl import SFTConfig, SFTTrainer

        model: Any = AutoModelForCausalLM.from_pretrained(
            ns.model, resid_pdrop=ns.dropout, embd_pdrop=ns.dropout, attn_pdrop=ns.dropout
        )  # the same dropout as our SFT stage (its default, 0.2)
        cfg: Any = SFTConfig(max_length=ns.max_length, packing=False, completion_only_loss=True, **args)
        cls: Any = SFTTrainer
        per_step: dict[str, float] = {}
    elif ns.phase == "reward":
        from trl import RewardConfig, RewardTrainer

        model = AutoModelForSequenceClassification.from_pretrained(ns.model, num_labels=1)
        cfg, cls, per_step = (
            RewardConfig(max_length=ns.max_length, **args),
            RewardTrainer,
            {"pairs": ns.batch},
        )
    else:
        from trl import DPOConfig, DPOTrainer

        model = AutoModelForCausalLM.from_pretrained(ns.model)
        cfg = DPOConfig(max_length=ns.max_length, beta=0.1, precompute_ref_log_probs=True, **args)
        cls, per_step = DPOTrainer, {"pairs": ns.batch}
    model.config.pad_token_id = tok.pad_token_id
    cb = WindowTicks(win, per_step)
    train(cls(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[cb]))


def online(ns: argparse.Namespace, tok: Any, rows: list[dict[str, Any]], win: Window) -> None:
    """TRL 1.16 RLOOTrainer or TRL 1.12's experimental PPOTrainer on the same reward model."""
    from datasets import Dataset

    args = common_args(ns)
    args["adam_epsilon"] = 1e-5  # as our PPO optimizer
    policy = AutoModelForCausalLM.from_pretrained(ns.model)
    rm = AutoModelForSequenceClassification.from_pretrained(ns.rm, num_labels=1)
    for m in (policy, rm):
        m.config.pad_token_id = tok.pad_token_id
    # ours: 16 rollouts per iteration in 2 minibatches of 8, one PPO epoch: one tick per rollout batch
    cb = WindowTicks(win, {"episodes": ns.batch // 2})
    if ns.phase == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        args["per_device_train_batch_size"] = ns.batch // 2
        cfg: Any = RLOOConfig(
            num_generations=4,
            steps_per_generation=2,
            max_completion_length=ns.response_length,
            temperature=1.0,
            beta=0.02,
            num_iterations=1,
            **args,
        )
        ds = Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
        trainer: Any = RLOOTrainer(
            model=policy,
            reward_funcs=rm,
            args=cfg,
            train_dataset=ds,
            processing_class=tok,
            reward_processing_classes=tok,
            callbacks=[cb],
        )
    else:
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        ref = AutoModelForCausalLM.from_pretrained(ns.model)
        value = AutoModelForSequenceClassification.from_pretrained(ns.rm, num_labels=1)
        for m in (ref, value):
            m.config.pad_token_id = tok.pad_token_id
        ds = Dataset.from_list([{"input_ids": tok(r["prompt"])["input_ids"]} for r in rows])
        for k in ("num_train_epochs", "lr_scheduler_type"):
            args.pop(k)
        # TRL 1.12: rollout batch = per_device_train_batch_size * gradient_accumulation_steps, split
        # into num_mini_batches minibatches: 16 rollouts in minibatches of 8, as ours.
        cfg = PPOConfig(
            num_mini_batches=2,
            total_episodes=10**7,
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
        cb.per_step = {"episodes": ns.batch}  # PPOTrainer calls on_step_end once per rollout batch
        trainer = PPOTrainer(
            args=cfg,
            processing_class=tok,
            model=policy,
            ref_model=ref,
            reward_model=rm,
            train_dataset=ds,
            value_model=value,
            callbacks=[cb],
        )
    train(trainer)


@torch.no_grad()
def generate(ns: argparse.Namespace, tok: Any, rows: list[dict[str, Any]], win: Window) -> None:
    """Batched HF generate with num_return_sequences=K over --gen-batch prompts per call, in rounds."""
    model = AutoModelForCausalLM.from_pretrained(ns.model).eval()
    tok.padding_side = "left"
    prompts = [r["prompt"] for r in rows[: ns.prompts]]
    while not win.done():
        for i in range(0, len(prompts), ns.gen_batch):
            enc = tok(prompts[i : i + ns.gen_batch], return_tensors="pt", padding=True)
            model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                max_new_tokens=ns.response_length,
                num_return_sequences=ns.k,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        win.tick(completions=len(prompts) * ns.k)


def main() -> None:
    """Run one TRL trainer (or the generate peer) and print measurements."""
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["sft", "reward", "dpo", "rloo", "ppo", "generate"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--rm", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--response-length", type=int, default=32)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.2, help="sft: dropout (GPT-2 keys, as our SFT)")
    ap.add_argument("--gen-batch", type=int, default=16)
    ns = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    tok = AutoTokenizer.from_pretrained(ns.model)
    rows = load_rows(ns.data)
    Profile.install(ns.model)
    win = Window(ns.seconds, *((1, 0.0) if ns.phase == "generate" else ()))  # one warm-up round
    if ns.phase in ("sft", "reward", "dpo"):
        supervised(ns, tok, rows, win)
    elif ns.phase == "generate":
        generate(ns, tok, rows, win)
    else:
        online(ns, tok, rows, win)
    import trl

    res: dict[str, Any] = {"phase": ns.phase, "impl": "trl", "trl_version": trl.__version__, **win.result()}
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
