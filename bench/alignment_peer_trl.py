"""Worker for bench/alignment_peer.py, run inside TRL's venv (bench/setup_trl.sh); prints one JSON line.

    .bench-venvs/trl116/bin/python bench/alignment_peer_trl.py --policy SFT --rm RM --data FILE --out DIR

TRL 1.16's RLOOTrainer from the SFT policy against DPO's implicit reward (bench/peer_reward.py), with
our PPO's settings where both have them: episodes, rollout batch (64 completions per generation, 16
per optimizer step), learning rate and its short warm-up, KL coefficient, clip range, response
length, temperature, gradient clipping, fp32 on the CPU. TRL's own defaults otherwise (its k-sample
leave-one-out baseline instead of a value model, KL in the reward, no weight EMA). Writes the policy
to DIR as an HF directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.peer_reward import ImplicitRewardFunction


def rloo_config(ns: argparse.Namespace) -> Any:
    """RLOOConfig with our PPO's settings where the two share one."""
    from trl import RLOOConfig

    return RLOOConfig(
        output_dir=os.path.join(ns.out, "trainer"),
        num_generations=ns.k,
        per_device_train_batch_size=ns.minibatch,  # completions per optimizer step
        steps_per_generation=ns.rollout // ns.minibatch,  # one generation batch: ns.rollout completions
        max_steps=ns.episodes // ns.minibatch,
        num_iterations=1,  # our ppo_epochs
        max_completion_length=ns.max_new_tokens,
        temperature=1.0,
        beta=ns.beta,
        epsilon=0.2,
        learning_rate=ns.lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=ns.warmup,
        optim="adamw_torch",
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-5,  # as our PPO optimizer
        weight_decay=0.0,
        max_grad_norm=1.0,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,  # as ours: no recomputation at this size
        use_cpu=True,
        seed=ns.seed,
        logging_steps=32,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def main() -> None:
    """Train, save the policy, print RESULT {...}."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--rm", required=True)
    ap.add_argument("--data", required=True, help="jsonl of {prompt: messages, prompt_ids: [...]}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--episodes", type=int, default=8192)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--rollout", type=int, default=64)
    ap.add_argument("--minibatch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--missing-eos-penalty", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    from datasets import Dataset
    from trl import RLOOTrainer, __version__

    tok = AutoTokenizer.from_pretrained(ns.policy)
    policy = AutoModelForCausalLM.from_pretrained(ns.policy)
    policy.config.pad_token_id = tok.pad_token_id
    with open(ns.data) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    reward = ImplicitRewardFunction(ns.rm, tok.eos_token_id, ns.missing_eos_penalty)
    trainer = RLOOTrainer(
        model=policy,
        reward_funcs=reward,
        args=rloo_config(ns),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.model.save_pretrained(ns.out)
    tok.save_pretrained(ns.out)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    res = {"trl_version": __version__, "seconds": round(seconds, 1), "steps": trainer.state.global_step}
    res["log"] = [{k: h.get(k) for k in ("step", "reward", "kl", "completions/mean_length")} for h in logs]
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
