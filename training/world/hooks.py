"""The simulated world as PPO's task-specific hooks: the oracle's score of each rollout and the
pre-training text for PPO-ptx. Callers (the app's worker through the stage description, the
training CLI, the benchmarks) hand them to training.ppo.run_ppo, by import path where the run may
cross a process boundary (training.launch)."""

from __future__ import annotations

import math
from typing import Any

from training.chat import prompt_text
from training.world.corpus import make_corpus
from training.world.tasks import oracle_score, parse_prompt

PTX_DOCS = 2000
# run_ppo's keyword -> "module:attribute" of the hook (JSON-safe, for the stage description).
PPO_HOOKS = {
    "extra_metrics": "training.world.hooks:oracle_metrics",
    "ptx_docs": "training.world.hooks:pretraining_docs",
}


def oracle_metrics(prompts: list[Any], texts: list[str]) -> dict[str, float]:
    """Mean oracle score of the completions of the world's prompts (NaN when none is the world's:
    every process reports the same keys)."""
    plain = [prompt_text(p) for p in prompts]
    vals = [oracle_score(p, t) for p, t in zip(plain, texts, strict=True) if parse_prompt(p) is not None]
    return {"oracle_score": sum(vals) / len(vals) if vals else math.nan}


def pretraining_docs(seed: int) -> list[str]:
    """The world corpus as PPO-ptx pre-training text."""
    return make_corpus(PTX_DOCS, seed=seed)
