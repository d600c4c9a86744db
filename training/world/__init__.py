"""The simulated world (pure Python, no torch): prompts, corpus, oracle judge and labelers.

Imported by the web app's CLI to seed demo prompts and to drive simulated labelers over HTTP.
"""

from training.world.corpus import (
    candidate_completions,
    corpus_prompts,
    make_corpus,
    unaligned_continuation,
)
from training.world.labelers import NOISE_SIGMA, SimulatedLabeler, pairwise_agreement
from training.world.tasks import (
    ANSWERABLE,
    FAMILIES,
    WORLD_VERSION,
    WorldPrompt,
    classify,
    ideal_answer,
    make_prompts,
    oracle_score,
    parse_prompt,
)

__all__ = [
    "ANSWERABLE",
    "FAMILIES",
    "NOISE_SIGMA",
    "WORLD_VERSION",
    "SimulatedLabeler",
    "WorldPrompt",
    "candidate_completions",
    "classify",
    "corpus_prompts",
    "ideal_answer",
    "make_corpus",
    "make_prompts",
    "oracle_score",
    "pairwise_agreement",
    "parse_prompt",
    "unaligned_continuation",
]
