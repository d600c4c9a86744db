"""Reward-model uncertainty of ranking tasks (active learning), for the sampling worker.

A task is a prompt and its K completions; its uncertainty is training.uncertainty.margin_uncertainty
of the reward model's K scores (1 = the RM cannot order them, 0 = it is sure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.chat import Prompt
from training.uncertainty import margin_uncertainty


def score_groups(
    rm: Any, tokenizer: Any, groups: Sequence[tuple[Prompt, Sequence[str]]], max_length: int = 128
) -> list[list[float]]:
    """The reward model's score of every completion of every (prompt, completions) group."""
    from training.batching import rm_scores

    prompts = [p for p, comps in groups for _ in comps]
    texts = [c for _, comps in groups for c in comps]
    flat = rm_scores(rm, tokenizer, prompts, texts, max_length).tolist() if texts else []
    out, at = [], 0
    for _, comps in groups:
        out.append([float(s) for s in flat[at : at + len(comps)]])
        at += len(comps)
    return out


def task_uncertainties(
    rm_dir: str | Path,
    groups: Sequence[tuple[Prompt, Sequence[str]]],
    max_length: int = 128,
    loaded: tuple[Any, Any] | None = None,
) -> list[float]:
    """Uncertainty in [0, 1] of each group under the reward model at rm_dir (or `loaded` = (rm, tok))."""
    from training.models import load_reward_model_and_tokenizer

    rm, tok = loaded if loaded is not None else load_reward_model_and_tokenizer(rm_dir)
    return [margin_uncertainty(s) for s in score_groups(rm, tok, groups, max_length)]
