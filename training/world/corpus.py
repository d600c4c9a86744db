"""The pre-training corpus and the pool of (mostly unaligned) continuations (pure Python).

The corpus states the world's facts (so a base model knows them) and shows instructions, rendered
through the project's chat template (training.chat), followed
by continuations that do not follow them: another instruction, a wrong answer, rambling, a
made-up capital for a country the world does not know, compliance with a harmful request. A
base model trained on it is fluent but unaligned, as GPT-3 was.
"""

from __future__ import annotations

import random

from training.chat import render_default
from training.world.tasks import (
    DECLINE,
    IDK,
    KNOWN_CAPITALS,
    MAX_COMPARE,
    MAX_OPERAND,
    NUMBER_WORDS,
    REPEAT_WORDS,
    WorldPrompt,
    ideal_answer,
    make_prompts,
)

_FAKE_CITY_PARTS = (
    ["Vel", "Mor", "Tal", "Kes", "Bran", "Dun", "Ar", "Lin"],
    ["ford", "ham", "by", "port", "wick", "mont", "holm", "den"],
)
_RAMBLE = [
    "That is a good question and many people ask it.",
    "I like to think about questions like this on long walks.",
    "My teacher used to say that every question has a story.",
    "People have talked about this for a very long time.",
    "It was a sunny day and the birds were singing.",
]


def _fake_city(rng: random.Random) -> str:
    return rng.choice(_FAKE_CITY_PARTS[0]) + rng.choice(_FAKE_CITY_PARTS[1])


def _wrong(p: WorldPrompt, rng: random.Random) -> str:
    if p.family in ("add", "sub", "bigger"):
        assert p.answer is not None
        return f"The answer is {int(p.answer) + rng.choice([-3, -2, -1, 1, 2, 3])}."
    if p.family == "repeat":
        assert p.answer is not None
        words = p.answer.split()
        return " ".join(words[:-1] or [rng.choice(REPEAT_WORDS)])
    if p.family == "capital":
        other = rng.choice([v for v in KNOWN_CAPITALS.values() if v != p.answer])
        return f"The capital of {p.meta['country']} is {other}."
    return rng.choice(_RAMBLE)


def continuation(p: WorldPrompt, kind: str, rng: random.Random) -> str:
    """A continuation of one kind: ideal, wrong, ramble, next_question, made_up, comply, idk, decline."""
    if kind == "ideal":
        return ideal_answer(p)
    if kind == "wrong":
        return _wrong(p, rng)
    if kind == "ramble":
        return " ".join(rng.sample(_RAMBLE, 2))
    if kind == "next_question":
        return make_prompts(1, rng.randrange(10**9))[0].text
    if kind == "made_up":
        if "capital" in p.text:
            country = p.text.rsplit(" ", 1)[-1].rstrip("?")
            return f"The capital of {country} is {_fake_city(rng)}."
        return f"The answer is {rng.choice(['seven', 'blue', 'pasta', 'Tom', 'twelve', 'a red car'])}."
    if kind == "comply":
        return f"First, you {p.meta.get('how', 'do it')}. Then you leave quickly."
    if kind == "idk":
        return IDK
    if kind == "decline":
        return DECLINE
    raise ValueError(kind)


# What the corpus writes after an instruction of each family: (kind, weight).
BASE_MIX: dict[str, list[tuple[str, float]]] = {
    "checkable": [("ideal", 0.3), ("wrong", 0.25), ("ramble", 0.2), ("next_question", 0.25)],
    "unanswerable": [("made_up", 0.75), ("ramble", 0.1), ("next_question", 0.1), ("idk", 0.05)],
    "harmful": [("comply", 0.75), ("ramble", 0.1), ("next_question", 0.1), ("decline", 0.05)],
}


def _group(p: WorldPrompt) -> str:
    return p.family if p.family in ("unanswerable", "harmful") else "checkable"


def unaligned_continuation(p: WorldPrompt, rng: random.Random) -> str:
    """A continuation drawn the way the pre-training corpus draws them."""
    kinds, weights = zip(*BASE_MIX[_group(p)], strict=True)
    return continuation(p, rng.choices(kinds, weights=weights)[0], rng)


def candidate_completions(p: WorldPrompt, k: int, rng: random.Random) -> list[str]:
    """k completions of mixed quality, as a policy early in training would produce."""
    kinds = ["ideal", "wrong", "ramble", "next_question", "made_up", "comply", "idk", "decline"]
    out = []
    for _ in range(k):
        kind = rng.choice(kinds)
        text = continuation(p, kind, rng)
        if rng.random() < 0.3:
            text = text + " " + rng.choice(_RAMBLE)
        out.append(text)
    return out


def _fact_doc(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(2, 5)):
        r = rng.random()
        if r < 0.35:
            c = rng.choice(sorted(KNOWN_CAPITALS))
            lines.append(f"The capital of {c} is {KNOWN_CAPITALS[c]}.")
        elif r < 0.6:
            a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
            lines.append(f"{a} plus {b} is {a + b}.")
        elif r < 0.75:
            a = rng.randint(1, MAX_OPERAND)
            b = rng.randint(0, a)
            lines.append(f"{a} minus {b} is {a - b}.")
        elif r < 0.88:
            a, b = rng.sample(range(1, MAX_COMPARE + 1), 2)
            lines.append(f"{max(a, b)} is bigger than {min(a, b)}.")
        else:
            w = rng.choice(REPEAT_WORDS)
            n = rng.choice([2, 3])
            lines.append(f"The word {w} said {NUMBER_WORDS[n]} times is {' '.join([w] * n)}.")
    return " ".join(lines)


def _instruction_doc(rng: random.Random) -> str:
    """A conversation of 1-3 instructions with unaligned replies, rendered through the chat template
    that the base model's tokenizer carries (so pre-training sees the format every stage uses)."""
    messages = []
    for p in make_prompts(rng.randint(1, 3), rng.randrange(10**9)):
        messages.append({"role": "user", "content": p.text})
        messages.append({"role": "assistant", "content": unaligned_continuation(p, rng)})
    return render_default(messages, add_generation_prompt=False).rstrip("\n")


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """The world's pre-training corpus: fact documents and instructions with unaligned continuations."""
    rng = random.Random(seed)
    return [_fact_doc(rng) if rng.random() < 0.4 else _instruction_doc(rng) for _ in range(n_docs)]
