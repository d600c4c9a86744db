"""GPU check: the training stages at 125M-350M parameters (built from configs, random weights) in bf16.

    bench/gpu_check.sh                        # on a lent GPU: at most 8 minutes, prints one table
    python -m bench.gpu_check --device cpu --tiny   # smoke run of the same code on the CPU (seconds)

Per model and stage it prints tokens/s, model-FLOPs utilisation, peak memory and (PPO) the KL at
step 0 ("ppo-rloo": PPO without a value model, as advantage_estimator rloo runs). MFU = achieved
model FLOPs / peak: training steps count 6 N per token (forward + backward), scoring and sampling
forwards 2 N per token; the peak is the H200's dense bf16 989 TFLOP/s
(--peak-tflops to change). N counts every parameter, embeddings included. Peak memory is
torch.cuda.max_memory_allocated per stage (reset before each stage); on the CPU it is not measured.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import random
import sys
import time
from collections.abc import Callable
from typing import Any

H200_BF16_DENSE_TFLOPS = 989.0
SHAPES: dict[str, dict[str, Any]] = {
    "125m": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12,
             "num_attention_heads": 12, "num_key_value_heads": 4, "vocab_size": 49152},
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152},
    "350m": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 24,
             "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 49152},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512},
}  # fmt: skip


class Clock:
    """Times a stage on the device (synchronising CUDA) and resets/reads its peak memory."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch, self.cuda = torch, device.type == "cuda"

    def __enter__(self) -> Clock:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.peak_gib = self.torch.cuda.max_memory_allocated() / 1024**3 if self.cuda else float("nan")


def _llama(shape: dict[str, Any], device: Any, num_labels: int | None = None) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(**shape, tie_word_embeddings=True, max_position_embeddings=2048, pad_token_id=0)
    if num_labels:
        cfg.num_labels = num_labels
        return LlamaForSequenceClassification(cfg).to(device)
    return LlamaForCausalLM(cfg).to(device)


def supervised(acc: Any, shape: dict[str, Any], reward: bool, a: argparse.Namespace) -> dict[str, float]:
    """SFT (causal LM) or RM (scalar head) steps through the shared loop: tokens/s, MFU, peak memory."""
    import torch

    from training.loop import LoopConfig, train_loop
    from training.models import RewardModel

    model = RewardModel(_llama(shape, acc.device, 1)) if reward else _llama(shape, acc.device)
    n = sum(p.numel() for p in model.parameters())
    rows = [torch.randint(1, shape["vocab_size"], (a.seq,)) for _ in range(a.batch * (a.steps + 1))]

    def loss_fn(m: Any, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if reward:
            return m(b["ids"], torch.ones_like(b["ids"])).float().pow(2).mean(), {}
        return m(input_ids=b["ids"], labels=b["ids"]).loss, {}

    def run(k: int) -> None:
        cfg = LoopConfig(epochs=1, batch_size=a.batch, lr=1e-5)
        train_loop(
            acc, model, rows[: a.batch * k], lambda r: {"ids": torch.stack(r)}, loss_fn, cfg, stage="gpu"
        )

    run(1)  # warm-up (kernels, allocator)
    with Clock(torch, acc.device) as c:
        run(a.steps)
    tokens = a.steps * a.batch * a.seq
    return {"params_M": n / 1e6, "tokens_s": tokens / c.seconds, "flops": 6 * n * tokens / c.seconds,
            "peak_GiB": c.peak_gib}  # fmt: skip


def ppo(acc: Any, shape: dict[str, Any], a: argparse.Namespace, critic: bool = True) -> dict[str, float]:
    """One PPO iteration (sampling, scoring by 4 models, update of policy and value); KL at step 0.
    Without a critic (advantage_estimator "rloo", groups of 2) there is no value model, as in run_ppo."""
    import torch

    from training.config import PPOConfig
    from training.losses import gae_advantages, kl_penalised_rewards, leave_one_out_advantages, masked_whiten
    from training.models import RewardModel, frozen
    from training.ppo import ppo_update, sample_rollout, score_rollout

    policy = _llama(shape, acc.device)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    head = RewardModel(_llama(shape, acc.device, 1))
    rm = frozen(copy.deepcopy(head) if critic else head, acc)
    n = sum(p.numel() for p in policy.parameters())
    if critic:
        opt = torch.optim.AdamW([*policy.parameters(), *head.parameters()], lr=1e-6)
        policy, value, opt = acc.prepare(policy, head, opt)
    else:
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-6)
        (policy, opt), value = acc.prepare(policy, opt), None
    B, Tq, R = a.batch * 2, a.seq // 2, a.seq // 2
    cfg = PPOConfig(minibatch_size=a.batch, micro_batch_size=a.batch, max_new_tokens=R, temperature=1.0)
    if not critic:
        cfg = dataclasses.replace(cfg, advantage_estimator="rloo", n_samples_per_prompt=2)
    query = torch.randint(1, shape["vocab_size"], (B, Tq), device=acc.device)
    qmask = torch.ones_like(query)
    gen = torch.Generator(device=acc.device).manual_seed(0)
    models = (acc.unwrap_model(policy), ref, rm, None if value is None else acc.unwrap_model(value))
    with Clock(torch, acc.device) as c:
        with acc.autocast():
            resp, rmask, _ = sample_rollout(models[0], query, qmask, cfg, eos_id=-1, pad_id=0, gen=gen)
            sc = score_rollout(models, query, qmask, resp, rmask, 1.0, a.batch)
        rmf = rmask.float()
        rewards, kl = kl_penalised_rewards(sc["logprobs"], sc["ref_logprobs"], sc["raw_scores"], rmf, 0.02)
        if critic:
            adv, ret = gae_advantages(rewards, sc["values"], rmf)
            adv = masked_whiten(adv, rmf)
        else:
            adv, ret = leave_one_out_advantages(rewards, rmf, 2), sc["values"]
        ro = {"query": query, "qmask": qmask, "response": resp, "rmask": rmf, "logprobs": sc["logprobs"],
              "values": sc["values"], "advantages": adv, "returns": ret}  # fmt: skip
        ppo_update(policy, value, opt, acc, ro, cfg, None, random.Random(0))
    T = Tq + resp.shape[1]
    scorers, trained = (4, 2) if critic else (3, 1)
    flops = n * (2 * B * resp.shape[1] + scorers * 2 * B * T + trained * 6 * B * T)  # sample, score, train
    return {"params_M": n / 1e6, "tokens_s": B * T / c.seconds, "flops": flops / c.seconds,
            "peak_GiB": c.peak_gib, "kl0": kl.sum(-1).mean().item()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Print one row per (model, stage) within the time budget."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and few steps (CPU smoke run)")
    ap.add_argument("--models", default="125m,smollm2-135m,350m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip what would start after this")
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    a = ap.parse_args(argv)
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} has no CUDA device here; nothing measured")
        return 0
    if a.tiny:
        a.models, a.batch, a.seq, a.steps = "tiny", 2, 32, 2
    from training.config import RuntimeConfig
    from training.models import make_accelerator

    acc = make_accelerator(RuntimeConfig(device=a.device, mixed_precision="bf16"))
    name = torch.cuda.get_device_name() if acc.device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, bf16 autocast, batch {a.batch} x seq {a.seq}, "
          f"MFU against {a.peak_tflops:.0f} TFLOP/s", flush=True)  # fmt: skip
    print(f"{'model':13} {'stage':8} {'params':>8} {'tokens/s':>10} {'MFU':>7} {'peak GiB':>9} {'KL@0':>8}")
    start = time.perf_counter()
    stages: dict[str, Callable[[Any, dict[str, Any], argparse.Namespace], dict[str, float]]] = {
        "sft": lambda acc, s, a: supervised(acc, s, False, a),
        "reward": lambda acc, s, a: supervised(acc, s, True, a),
        "ppo": ppo,
        "ppo-rloo": lambda acc, s, a: ppo(acc, s, a, critic=False),
    }
    for model in a.models.split(","):
        for stage, fn in stages.items():
            if time.perf_counter() - start > a.budget_s:
                print(f"{model:13} {stage:8} skipped: the {a.budget_s:.0f} s budget is spent")
                continue
            torch.manual_seed(0)
            r = fn(acc, SHAPES[model], a)
            mfu = r["flops"] / (a.peak_tflops * 1e12)
            print(f"{model:13} {stage:8} {r['params_M']:7.1f}M {r['tokens_s']:10.0f} {mfu:7.2%} "
                  f"{r['peak_GiB']:9.2f} {r.get('kl0', float('nan')):8.4f}", flush=True)  # fmt: skip
            if acc.device.type == "cuda":
                torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
