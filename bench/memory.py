"""Peak memory per training stage on a llama-shaped model built from a config (random weights).

    python -m bench.memory                   # every case at SmolLM2-135M's shape, each in its own process
    python -m bench.memory --case sft --checkpointing   # one case (what the parent runs)
    python -m bench.memory --formula-only    # the computed table (135M and 1B), no measurement

Each case runs in a fresh process and reports its peak resident memory (ru_maxrss) minus the
process's resident memory after imports: weights, gradients, optimizer states, activations and
logits of two optimizer steps (SFT, RM; the second holds the Adam moments) or of one PPO iteration
(rollout scoring of 2 x batch rows in micro-batches, then two minibatch updates; "ppo-rloo" is PPO
with the leave-one-out baseline, which builds no value model).
On a GPU, --device cuda reports torch.cuda.max_memory_allocated instead. The formula beside each
measurement is the estimate the README table uses for 1B, so the measurement checks the formula.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

SMOLLM2_135M = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}
LLAMA_1B = {  # Llama-3.2-1B's shape
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
}
CASES = ("sft", "sft-ckpt", "reward", "ppo", "ppo-ckpt", "ppo-rloo")
GIB = 1024**3


def n_params(shape: dict[str, Any]) -> int:
    """Parameters of a llama-shaped model (tied embeddings, RMSNorm weights included)."""
    h, i, L, V = (
        shape["hidden_size"],
        shape["intermediate_size"],
        shape["num_hidden_layers"],
        shape["vocab_size"],
    )
    kv = h * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return V * h + L * per_layer + h


def lora_params(shape: dict[str, Any], r: int = 16) -> int:
    """Trainable parameters of LoRA rank r on every projection (q, k, v, o, gate, up, down)."""
    h, i, L = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = h * shape["num_key_value_heads"] // shape["num_attention_heads"]
    return L * r * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)


def lora_weight_gib(
    shape: dict[str, Any], ppo: bool, r: int = 16, critic: bool = True
) -> tuple[float, float]:
    """Weights + grads + Adam, full fine-tune vs LoRA (bf16 frozen base, fp32 adapter at 16 bytes/param).

    PPO: policy and value trained (the policy alone without a critic, critic=False), the reference is
    the policy's base with the adapter off (no copy), the reward model bf16. Activations are not
    included (LoRA does not shrink them)."""
    N, A = n_params(shape), lora_params(shape, r)
    if ppo:
        m = 2 if critic else 1
        return (16 * N * m + 4 * N + 2 * N) / GIB, (2 * N * m + 16 * A * m + 2 * N) / GIB
    return 16 * N / GIB, (2 * N + 16 * A) / GIB


def activation_bytes(
    shape: dict[str, Any], tokens: int, logit_tokens: int, checkpointing: bool, nbytes: int
) -> float:
    """Activations kept for backward of one forward: about (17 h + 1.5 i) values per token per layer
    (attention by SDPA, so no s^2 term), one hidden state per layer with checkpointing, plus the
    logits with their fp32 log-softmax (V per logit token, nbytes + 8 bytes)."""
    h, i, L, V = (
        shape["hidden_size"],
        shape["intermediate_size"],
        shape["num_hidden_layers"],
        shape["vocab_size"],
    )
    per_token_layer = h if checkpointing else 17 * h + 1.5 * i
    return tokens * L * per_token_layer * nbytes + logit_tokens * V * (nbytes + 8)


def formula_gib(case: str, shape: dict[str, Any], batch: int, seq: int, micro: int, bf16: bool) -> float:
    """The estimate: each trained model 16 bytes/param (fp32 weights and grads, 2 Adam moments); the frozen
    reference 4 (it keeps the policy's dtype), the reward model 2 in bf16 on a GPU (else 4); activations of
    one forward (SFT, RM: the batch; PPO: a micro-batch of the policy and of the value model, which
    "ppo-rloo" does not have)."""
    N = n_params(shape)
    ckpt = case.endswith("-ckpt")
    nbytes = 2 if bf16 else 4
    if case.startswith("ppo"):
        tok = micro * seq  # query and response are seq / 2 each
        act = activation_bytes(shape, tok, micro * (seq // 2 + 1), ckpt, nbytes)
        trained = 1 if case == "ppo-rloo" else 2  # the policy, and the value model under GAE
        act += activation_bytes(shape, tok, 0, ckpt, nbytes) * (trained - 1)
        return (16 * N * trained + 4 * N + nbytes * N + act) / GIB
    logits = 0 if case == "reward" else batch * seq
    return (16 * N + activation_bytes(shape, batch * seq, logits, ckpt, nbytes)) / GIB


def _llama(shape: dict[str, Any], num_labels: int | None = None) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(**shape, max_position_embeddings=2048, pad_token_id=0)
    if num_labels:
        cfg.num_labels = num_labels
        return LlamaForSequenceClassification(cfg)
    return LlamaForCausalLM(cfg)


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is KiB on Linux


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """One case in this process: build, one step, report peak memory."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base = torch.cuda.memory_allocated() / GIB if device.type == "cuda" else _rss_gib()
    t0 = time.perf_counter()
    shape = SMOLLM2_135M if args.size == "135m" else LLAMA_1B
    ckpt = case.endswith("-ckpt")
    if case.startswith("ppo"):
        tokens = _ppo_case(shape, device, ckpt, case != "ppo-rloo", args)
    else:
        tokens = _supervised_case(shape, device, ckpt, case == "reward", args)
    peak = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else _rss_gib()
    return {
        "case": case,
        "params_M": round(n_params(shape) / 1e6, 1),
        "tokens": tokens,
        "peak_GiB": round(peak - base, 2),
        "formula_GiB": round(
            formula_gib(case, shape, args.batch, args.seq, args.micro, device.type == "cuda"), 2
        ),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _supervised_case(
    shape: dict[str, Any], device: Any, ckpt: bool, reward: bool, args: argparse.Namespace
) -> int:
    """One SFT (causal LM) or reward-model (scalar head) optimizer step at batch x seq tokens."""
    import torch

    from training.config import RuntimeConfig
    from training.loop import LoopConfig, train_loop
    from training.models import RewardModel, make_accelerator

    acc = make_accelerator(RuntimeConfig(device=args.device))
    model = RewardModel(_llama(shape, 1)) if reward else _llama(shape)
    # two optimizer steps: the second one holds the Adam moments created by the first
    rows = [torch.randint(1, shape["vocab_size"], (args.seq,)) for _ in range(2 * args.batch)]

    def loss_fn(m: Any, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if reward:
            return m(b["ids"], torch.ones_like(b["ids"])).mean(), {}
        return m(input_ids=b["ids"], labels=b["ids"]).loss, {}

    cfg = LoopConfig(epochs=1, batch_size=args.batch, lr=1e-5, gradient_checkpointing=ckpt and not reward)
    if ckpt and reward:
        from training.loop import enable_gradient_checkpointing

        enable_gradient_checkpointing(model.model)
    train_loop(acc, model.to(device), rows, lambda r: {"ids": torch.stack(r)}, loss_fn, cfg, stage="bench")
    return args.batch * args.seq  # per step


def _ppo_case(shape: dict[str, Any], device: Any, ckpt: bool, critic: bool, args: argparse.Namespace) -> int:
    """One PPO iteration: score a rollout (policy, reference, RM, value) in micro-batches, one update;
    without a critic (advantage_estimator "rloo") no value model exists, as in run_ppo."""
    import copy
    import dataclasses
    import random

    import torch

    from training.config import PPOConfig, RuntimeConfig
    from training.loop import enable_gradient_checkpointing
    from training.losses import gae_advantages, masked_whiten
    from training.models import RewardModel, frozen, make_accelerator
    from training.ppo import ppo_update, score_rollout

    acc = make_accelerator(RuntimeConfig(device=args.device))
    policy = _llama(shape)
    if ckpt:
        enable_gradient_checkpointing(policy)
    ref = copy.deepcopy(policy).eval().requires_grad_(False).to(device)
    head = RewardModel(_llama(shape, 1))
    rm = frozen(copy.deepcopy(head) if critic else head, acc)
    value = head if critic else None
    if ckpt and value is not None:  # as run_ppo does: both trained models
        enable_gradient_checkpointing(value.model)
    if value is None:
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-6)
        policy, opt = acc.prepare(policy, opt)
    else:
        opt = torch.optim.AdamW([*policy.parameters(), *value.parameters()], lr=1e-6)
        policy, value, opt = acc.prepare(policy, value, opt)
    B, Tq, R = args.batch * 2, args.seq // 2, args.seq // 2
    cfg = PPOConfig(minibatch_size=args.batch, micro_batch_size=args.micro, max_new_tokens=R)
    if not critic:
        cfg = dataclasses.replace(cfg, advantage_estimator="rloo", n_samples_per_prompt=2)
    query = torch.randint(1, shape["vocab_size"], (B, Tq), device=device)
    resp = torch.randint(1, shape["vocab_size"], (B, R), device=device)
    qmask, rmask = torch.ones_like(query), torch.ones_like(resp)
    with acc.autocast():
        sc = score_rollout((policy, ref, rm, value), query, qmask, resp, rmask, 1.0, args.micro)
    rewards = torch.zeros(B, R, device=device)
    adv, ret = gae_advantages(rewards, sc["values"], rmask.float())
    ro = {"query": query, "qmask": qmask, "response": resp, "rmask": rmask.float(),
          "logprobs": sc["logprobs"], "values": sc["values"],
          "advantages": masked_whiten(adv, rmask.float()), "returns": ret}  # fmt: skip
    ppo_update(policy, value, opt, acc, ro, cfg, None, random.Random(0))  # two minibatches: two steps
    return B * (Tq + R)


def main(argv: list[str] | None = None) -> int:
    """Run every case in its own process and print a table (or one case, as JSON)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--case", choices=CASES)
    ap.add_argument("--size", default="135m", choices=["135m", "1b"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--micro", type=int, default=4, help="PPO micro-batch rows")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--formula-only", action="store_true")
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return 0
    if args.formula_only:
        for name, shape in (("135M", SMOLLM2_135M), ("1B", LLAMA_1B)):
            for case in CASES:
                gib = formula_gib(case, shape, args.batch, args.seq, args.micro, True)
                mparams = n_params(shape) / 1e6
                print(f"{name:5} {case:9} {mparams:7.1f}M params, formula (bf16 GPU) {gib:6.2f} GiB")
            frac = lora_params(shape) / n_params(shape)
            stages = (("sft/rm", False, True), ("ppo", True, True), ("ppo-rloo", True, False))
            for label, is_ppo, critic in stages:
                full, lora = lora_weight_gib(shape, is_ppo, critic=critic)
                print(
                    f"{name:5} {label:9} weights+grads+Adam: full {full:6.2f} GiB, LoRA r=16 {lora:6.2f} GiB "
                    f"({frac:.2%} of parameters trainable)"
                )
        return 0
    print(f"{'case':9} {'params':>8} {'tokens':>7} {'peak GiB':>9} {'formula':>8} {'s':>6}")
    for case in CASES:
        cmd = [sys.executable, "-m", "bench.memory", "--case", case, *_passthrough(args)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"{r['case']:9} {r['params_M']:7.1f}M {r['tokens']:7} {r['peak_GiB']:9.2f} "
              f"{r['formula_GiB']:8.2f} {r['seconds']:6.1f}", flush=True)  # fmt: skip
    return 0


def _passthrough(args: argparse.Namespace) -> list[str]:
    return ["--size", args.size, "--device", args.device, "--batch", str(args.batch), "--seq", str(args.seq),
            "--micro", str(args.micro), "--threads", str(args.threads)]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
