"""Turning the simulated world into export-batch records (pure Python): splits, demonstrations, rankings."""

from __future__ import annotations

import random
from typing import Any

from training.world.labelers import SimulatedLabeler
from training.world.tasks import WorldPrompt


def split_by_user(
    prompts: list[WorldPrompt], valid: float = 0.1, test: float = 0.1, seed: int = 0
) -> list[str]:
    """A split name per prompt, assigned by user id so no user's prompts straddle splits."""
    users = sorted({p.user_id for p in prompts})
    rng = random.Random(seed)
    rng.shuffle(users)
    n_valid, n_test = round(len(users) * valid), round(len(users) * test)
    split = {u: "valid" for u in users[:n_valid]}
    split.update({u: "test" for u in users[n_valid : n_valid + n_test]})
    return [split.get(p.user_id, "train") for p in prompts]


def demonstration_records(
    prompts: list[WorldPrompt], splits: list[str], labelers: list[SimulatedLabeler]
) -> list[dict[str, Any]]:
    """sft.jsonl rows: one demonstration per prompt, written by labelers in turn."""
    rows: list[dict[str, Any]] = []
    for i, (p, s) in enumerate(zip(prompts, splits, strict=True)):
        lab = labelers[i % len(labelers)]
        rows.append(
            {
                "prompt": p.text,
                "completion": lab.demonstrate(p),
                "split": s,
                "provenance": {"labeler": f"sim-{lab.seed}", "user_id": p.user_id, "family": p.family},
            }
        )
    return rows


def base_prov(lab: SimulatedLabeler, p: WorldPrompt) -> dict[str, Any]:
    """Provenance of a simulated label."""
    return {"labeler": f"sim-{lab.seed}", "user_id": p.user_id, "family": p.family}


def ranking_records(
    prompts: list[WorldPrompt],
    splits: list[str],
    completions: list[list[str]],
    labelers: list[SimulatedLabeler],
    provenance: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """rankings.jsonl rows: each prompt's K completions ranked by one labeler (in turn)."""
    rows: list[dict[str, Any]] = []
    for i, (p, s, comps) in enumerate(zip(prompts, splits, completions, strict=True)):
        lab = labelers[i % len(labelers)]
        rows.append(
            {
                "prompt": p.text,
                "completions": comps,
                "ranks": lab.rank(p, comps),
                "split": s,
                "provenance": {**base_prov(lab, p), **(provenance or {})},
            }
        )
    return rows


def prompt_records(prompts: list[WorldPrompt], splits: list[str]) -> list[dict[str, Any]]:
    """prompts.jsonl rows."""
    return [
        {"prompt": p.text, "split": s, "provenance": {"user_id": p.user_id, "family": p.family}}
        for p, s in zip(prompts, splits, strict=True)
    ]
