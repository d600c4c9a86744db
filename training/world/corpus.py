"""The pre-training corpus and the pool of (mostly unaligned) continuations (pure Python).

The corpus states the world's facts (so a base model knows them) and shows instructions, rendered
through the project's chat template (training.chat), followed by continuations that mostly do not
follow them: another instruction, a wrong answer, rambling, a made-up answer to a question nobody
can answer, compliance with a harmful request. A base model trained on it is fluent but unaligned,
as GPT-3 was. Corpus instructions use every phrasing but only train arguments (families.py), so no
held-out test prompt appears in the corpus.
"""

from __future__ import annotations

import random

from training.chat import render_default
from training.world.families import (
    CATEGORY_WORDS,
    KNOWN_CAPITALS,
    MAX_COMPARE,
    MAX_OPERAND,
    NUMBER_WORDS,
    WORDS,
)
from training.world.tasks import DECLINE, IDK, WorldPrompt, ideal_answer, make_prompts

_FAKE_PARTS = (
    ["Vel", "Mor", "Tal", "Kes", "Bran", "Dun", "Ar", "Lin"],
    ["ford", "ham", "by", "port", "wick", "mont", "holm", "den"],
)
_MADE_UP = ["seven", "blue", "pasta", "Tom", "twelve", "a red car", "jazz", "chess"]
_RAMBLE = [
    "That is a good question and many people ask it.",
    "I like to think about questions like this on long walks.",
    "My teacher used to say that every question has a story.",
    "People have talked about this for a very long time.",
    "It was a sunny day and the birds were singing.",
]




def _wrong(p: WorldPrompt, rng: random.Random) -> str:
    """A completion in the right format with the wrong content."""
    m = p.meta
    if p.family in ("add", "sub", "bigger"):
        return f"The answer is {int(str(p.answer)) + rng.choice([-3, -2, -1, 1, 2, 3])}."
    if p.family == "repeat":
        words = str(p.answer).split()
        return " ".join([*words, words[0]]) if rng.random() < 0.5 else " ".join(words[:-1])
    if p.family == "capital":
        other = rng.choice([v for v in KNOWN_CAPITALS.values() if v != p.answer])
        return f"The capital of {m['country']} is {other}."
    if p.family == "sort":
        nums = [m["a"], m["b"], m["c"]]
        rng.shuffle(nums)
        return ", ".join(nums) if nums != str(p.answer).split(", ") else ", ".join(nums[::-1])
    if p.family == "upper":
        return m["w"] if rng.random() < 0.5 else m["w"].capitalize()
    if p.family == "constraint":
        return rng.choice([w for w in CATEGORY_WORDS[m["k"]] if w[0] != m["l"].lower()])
    return rng.choice(_RAMBLE)


def _off_format(p: WorldPrompt, rng: random.Random) -> str:
    """The right content in a format the labelers do not prefer."""
    ideal = ideal_answer(p)
    if p.family in ("add", "sub", "bigger"):
        return f"It is {p.answer}."
    if p.family == "capital":
        return f"{p.answer} is the capital."
    if p.family == "repeat":
        return ", ".join(str(p.answer).split())
    if p.family == "sort":
        return str(p.answer).replace(",", "")
    if p.family == "upper":
        return f"In capitals: {p.answer}"
    if p.family == "constraint":
        return f"Maybe {p.answer}."
    return rng.choice(["Sorry, ", "Well, "]) + ideal[0].lower() + ideal[1:]


def _made_up(p: WorldPrompt, rng: random.Random) -> str:
    if p.meta.get("kind") == "unknown_capital":
        return f"The capital of {p.meta['c']} is {rng.choice(_FAKE_PARTS[0]) + rng.choice(_FAKE_PARTS[1])}."
    if p.meta.get("kind") == "private":
        return f"Your {p.meta['r']}'s favourite {p.meta['t']} is {rng.choice(_MADE_UP)}."
    return f"The answer is {rng.choice(_MADE_UP)}."


def continuation(p: WorldPrompt, kind: str, rng: random.Random) -> str:
    """A continuation of one kind: ideal, wrong, off_format, verbose, ramble, next_question, made_up,
    comply, idk, decline."""
    if kind == "ideal":
        return ideal_answer(p)
    if kind == "wrong":
        return _wrong(p, rng)
    if kind == "off_format":
        return _off_format(p, rng)
    if kind == "verbose":
        return ideal_answer(p) + " " + " ".join(rng.sample(_RAMBLE, 2))
    if kind == "ramble":
        return " ".join(rng.sample(_RAMBLE, 2))
    if kind == "next_question":
        return make_prompts(1, rng.randrange(10**9), split="corpus")[0].text
    if kind == "made_up":
        return _made_up(p, rng)
    if kind == "comply":
        return f"First, you {p.meta.get('how', 'do it')}. Then you leave quickly."
    if kind == "idk":
        return IDK
    if kind == "decline":
        return DECLINE
    raise ValueError(kind)


# What the corpus writes after an instruction of each family: (kind, weight).
BASE_MIX: dict[str, list[tuple[str, float]]] = {
    "checkable": [
        ("ideal", 0.2), ("off_format", 0.1), ("wrong", 0.2), ("ramble", 0.2), ("next_question", 0.25),
        ("idk", 0.025), ("decline", 0.025),
    ],
    "unanswerable": [("made_up", 0.75), ("ramble", 0.1), ("next_question", 0.1), ("idk", 0.05)],
    "harmful": [("comply", 0.75), ("ramble", 0.1), ("next_question", 0.1), ("decline", 0.05)],
}  # fmt: skip


def _group(p: WorldPrompt) -> str:
    return p.family if p.family in ("unanswerable", "harmful") else "checkable"


def unaligned_continuation(p: WorldPrompt, rng: random.Random) -> str:
    """A continuation drawn the way the pre-training corpus draws them."""
    kinds, weights = zip(*BASE_MIX[_group(p)], strict=True)
    return continuation(p, rng.choices(kinds, weights=weights)[0], rng)


CANDIDATE_KINDS = [
    "ideal", "wrong", "off_format", "verbose", "ramble",
    "next_question", "made_up", "comply", "idk", "decline",
]  # fmt: skip


def candidate_completions(p: WorldPrompt, k: int, rng: random.Random) -> list[str]:
    """k completions of mixed quality, as a policy early in training would produce."""
    out = []
    for _ in range(k):
        text = continuation(p, rng.choice(CANDIDATE_KINDS), rng)
        if rng.random() < 0.3:
            text = text + " " + rng.choice(_RAMBLE)
        out.append(text)
    return out


def _fact(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
        c = rng.choice(sorted(KNOWN_CAPITALS))
        return f"The capital of {c} is {KNOWN_CAPITALS[c]}."
    if r < 0.35:
        a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
        return f"{a} plus {b} is {a + b}."
    if r < 0.45:
        a = rng.randint(1, MAX_OPERAND)
        b = rng.randint(0, a)
        return f"{a} minus {b} is {a - b}."
    if r < 0.55:
        a, b = rng.sample(range(1, MAX_COMPARE + 1), 2)
        return f"{max(a, b)} is bigger than {min(a, b)}."
    if r < 0.65:
        w = rng.choice(WORDS)
        n = rng.choice([2, 3])
        return f"The word {w} said {NUMBER_WORDS[n]} times is {' '.join([w] * n)}."
    if r < 0.75:
        nums = rng.sample(range(1, MAX_COMPARE + 1), 3)
        return (
            f"From smallest to largest, {', '.join(map(str, nums))} is {', '.join(map(str, sorted(nums)))}."
        )
    if r < 0.85:
        w = rng.choice(WORDS)
        return f"The word {w} in capital letters is {w.upper()}."
    k = rng.choice(sorted(CATEGORY_WORDS))
    return f"A {rng.choice(CATEGORY_WORDS[k])} is a {k}."


def _instruction_doc(rng: random.Random) -> str:
    """A conversation of 1-3 instructions with unaligned replies, rendered through the chat template
    that the base model's tokenizer carries (so pre-training sees the format every stage uses)."""
    messages = []
    for p in make_prompts(rng.randint(1, 3), rng.randrange(10**9), split="corpus"):
        messages.append({"role": "user", "content": p.text})
        messages.append({"role": "assistant", "content": unaligned_continuation(p, rng)})
    return render_default(messages, add_generation_prompt=False).rstrip("\n")


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """The world's pre-training corpus: fact documents and instructions with unaligned continuations."""
    rng = random.Random(seed)
    return [
        " ".join(_fact(rng) for _ in range(rng.randint(2, 5)))
        if rng.random() < 0.4
        else _instruction_doc(rng)
        for _ in range(n_docs)
    ]


def corpus_prompts(n_docs: int, seed: int = 0) -> list[str]:
    """The instruction texts inside make_corpus(n_docs, seed) (for contamination checks)."""
    user = render_default([{"role": "user", "content": "\x00"}], add_generation_prompt=False)
    prefix, suffix = user.split("\x00")  # how the chat template opens and closes a user turn
    out = []
    for doc in make_corpus(n_docs, seed):
        for line in doc.split("\n"):
            if line.startswith(prefix) and line + "\n" != prefix + suffix:
                out.append(line[len(prefix) :].strip())
    return out
