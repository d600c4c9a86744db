"""What the training CLI is given, checked before any work: prompts files, numeric flags' ranges,
and the paths of models and outputs (so that a mistake costs one line, not a training run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training.chat import Prompt, row_prompt
from training.checkpoints import read_manifest
from training.data import check_row


def read_prompts(args: argparse.Namespace) -> list[Prompt]:
    """Prompts from --prompt flags and --prompts-file (JSONL rows with a "prompt" or "messages", as in
    an export batch's prompts.jsonl; or a text file, one prompt per line)."""
    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.exists():
            raise SystemExit(f"error: prompts file {path} does not exist")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    row = check_row("prompts.jsonl", json.loads(line), f"{path}:{n}")
                except json.JSONDecodeError as e:
                    raise SystemExit(f"error: {path}:{n}: malformed JSON ({e.msg})") from e
                except ValueError as e:
                    raise SystemExit(f"error: {e}") from e
                prompts.append(row_prompt(row))
            else:
                prompts.append(line.strip())
    if not prompts:
        raise SystemExit("error: no prompts: give --prompt TEXT or --prompts-file FILE")
    return prompts


def at_least(low: float, cast: type = int) -> Any:
    """An argparse type: `cast` of the text, refused below `low` (argparse prints the message)."""

    def parse(text: str) -> Any:
        value = cast(text)  # a ValueError here is argparse's "invalid int value"
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {text}")
        return value

    parse.__name__ = cast.__name__
    return parse


def above_zero(text: str) -> float:
    """An argparse type for a strength such as DPO's beta: above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def probability(text: str) -> float:
    """An argparse type for top-p: above 0, at most 1."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, not {text}")
    return value


# Model arguments and what they must hold; commands whose --out is a new directory.
POLICY_ARGS = ("base", "policy", "model", "dpo", "reference")
NEW_OUT = ("sft", "reward", "implicit-reward", "ppo", "dpo", "import", "world-batch", "sample")
MAKES_RM = "`python -m training reward` or `implicit-reward` writes one"


def _model_kind(path: Path) -> str | None:
    """A model directory's kind from its manifest ("policy", "reward"), None when it does not say."""
    try:
        kind = read_manifest(path).get("kind")
    except (ValueError, AttributeError):  # a manifest that is not a JSON object says nothing
        return None
    return kind if isinstance(kind, str) else None


def check_paths(args: argparse.Namespace) -> None:
    """Refuse before any work what would fail after it or lose something: an --out that exists (model
    directories and batches are never overwritten, nor samples a user may have ranked since), a model
    argument naming a missing path or a directory with no model, a reward model where a policy goes
    or the other way round."""
    from training.implicit import IMPLICIT_FILE  # torch: every command loads it next anyway

    out = getattr(args, "out", None)  # sample's is optional (stdout)
    if args.cmd in NEW_OUT and out and Path(out).exists():
        raise SystemExit(f"error: --out {out} exists; it is never overwritten: choose a new one")
    for name in (*POLICY_ARGS, "reward_model"):
        value = getattr(args, name, None)
        if value is None:
            continue
        flag, path = "--" + name.replace("_", "-"), Path(value)
        if not path.exists():
            raise SystemExit(f"error: {flag} {value} does not exist")
        has_model = (path / "config.json").exists() or (path / IMPLICIT_FILE).exists()
        if not path.is_dir() or not has_model:
            raise SystemExit(f"error: {flag} {value} is not a model directory (no config.json)")
        kind = _model_kind(path)
        if name == "reward_model" and kind not in (None, "reward"):
            raise SystemExit(f"error: {flag} {value} is a {kind}, not a reward model ({MAKES_RM})")
        if name != "reward_model" and kind == "reward" and args.cmd != "reward":  # an RM may start an RM
            raise SystemExit(f"error: {flag} {value} is a reward model, not a policy")
        if args.cmd == "reward" and (path / IMPLICIT_FILE).exists():  # a scalar head can not start from it
            raise SystemExit(
                f"error: {flag} {value} is an implicit reward model (a DPO policy and its reference); "
                "start a reward model from a policy, or from a reward model `python -m training reward` wrote"
            )
