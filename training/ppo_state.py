"""Resumable PPO checkpoints: everything a stopped run needs to continue where it left off.

Written to `<out_dir>.checkpoint` (a file beside the final model directory, which only appears once
the run finishes) every `checkpoint_every` iterations, atomically; removed when the run finishes.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch


def checkpoint_path(out_dir: str | Path) -> Path:
    """Where run_ppo keeps its resumable state for out_dir."""
    out = Path(out_dir)
    return out.parent / f"{out.name}.checkpoint"


def _config_key(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match for a checkpoint to be resumed (not runtime or checkpointing)."""
    return {k: v for k, v in config.items() if k not in ("runtime", "checkpoint_every", "resume")}


def save_state(path: Path, iteration: int, parts: dict[str, Any], config: dict[str, Any]) -> None:
    """Write the state after `iteration` atomically: state_dict() of each part, plus RNG states."""
    state: dict[str, Any] = {"iteration": iteration, "config": _config_key(config)}
    for name, part in parts.items():
        if isinstance(part, random.Random):
            state[name] = part.getstate()
        elif isinstance(part, torch.Generator):
            state[name] = part.get_state()
        elif hasattr(part, "state_dict"):
            state[name] = part.state_dict()
        else:
            state[name] = part
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _fits(part: Any, saved: Any) -> bool:
    """Whether a saved state_dict has the part's layout: a module's parameter names and shapes, an
    optimizer's parameter groups and their sizes (a checkpoint from another version may differ)."""
    if isinstance(part, torch.optim.Optimizer):
        groups = saved.get("param_groups", []) if isinstance(saved, dict) else []
        return [len(g["params"]) for g in groups] == [len(g["params"]) for g in part.param_groups]
    if isinstance(part, torch.nn.Module):
        return isinstance(saved, dict) and _shapes(part.state_dict()) == _shapes(saved)
    return True


def _shapes(state_dict: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}


def load_state(path: Path, parts: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """Restore parts from a checkpoint written with the same settings; None (and nothing restored) if
    there is none, it belongs to other settings, or its parts do not fit these (a checkpoint written
    by another version: e.g. with a value model this run does not build). Returns the raw state
    (iteration, plain values)."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False, map_location="cpu")
    if state.get("config") != _config_key(config):
        return None
    if not all(name in state and _fits(part, state[name]) for name, part in parts.items()):
        return None
    for name, part in parts.items():
        if isinstance(part, random.Random):
            part.setstate(state[name])
        elif isinstance(part, torch.Generator):
            part.set_state(state[name])
        elif hasattr(part, "load_state_dict"):
            part.load_state_dict(state[name])
    return dict(state)
