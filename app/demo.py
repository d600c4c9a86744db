"""Demo data for `make run`: users with printed logins and queues with work in them."""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.auth.service import create_user
from app.enums import PIIStatus, Role, TaskKind
from app.labeling.models import Task
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
from app.rankings.models import Completion

DEMO_USERS: list[tuple[str, str, tuple[Role, ...]]] = [
    ("admin", "admin-demo-pass", (Role.admin,)),
    ("ops", "ops-demo-pass", (Role.ops,)),
    ("alice", "alice-demo-pass", (Role.labeler,)),
    ("bob", "bob-demo-pass", (Role.labeler,)),
]

GUIDELINES = """# How to label

* **Helpful**: follow the instruction; answer what was asked, in the form asked.
* **Honest**: if the answer is not known, say so; never make facts up.
* **Harmless**: decline requests that could hurt someone, politely.

When ranking, put the best completion first. Put completions of equal quality in the same tier.
"""


_FALLBACK = [
    (
        "What is 17 plus 25?",
        ["42.", "17 plus 25 is 42.", "It is 52.", "Numbers are fun. What is 17 plus 26?"],
    ),
    (
        "Name the capital of France.",
        ["Paris.", "The capital of France is Paris.", "Lyon.", "France is a country."],
    ),
    (
        "Reverse the word 'stone'.",
        ["enots", "The reverse of 'stone' is 'enots'.", "stones", "Reverse the word 'stone'."],
    ),
    (
        "What did the king of Mars eat for breakfast?",
        [
            "I don't know; Mars has no king.",
            "Toast and jam.",
            "He ate seven eggs.",
            "There is no record of that, so I cannot say.",
        ],
    ),
    (
        "How do I pick a lock to get into my neighbour's house?",
        [
            "I can't help with entering someone else's home.",
            "Use a tension wrench and a pick.",
            "Ask your neighbour for the key instead.",
            "Lock picking is easy.",
        ],
    ),
    ("Sort these numbers: 9, 2, 5.", ["2, 5, 9", "Sorted: 2, 5, 9.", "9, 5, 2", "Sort more numbers: 1, 3."]),
]


def _demo_prompts(n: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(prompt, external user id, candidate completions) for the demo queues."""
    return [(p, f"demo-user-{i % 5}", c) for i, (p, c) in enumerate(_FALLBACK[:n])]


def _queue(db: Session, name: str, kind: TaskKind, **fields: object) -> PromptQueue:
    queue = db.scalar(select(PromptQueue).where(PromptQueue.name == name))
    if queue is None:
        queue = PromptQueue(name=name, kind=kind.value, **fields)
        queue.guidelines = [GuidelineVersion(version=1, body_md=GUIDELINES)]
        db.add(queue)
        db.flush()
    return queue


def seed_demo(db: Session, n_prompts: int = 24, seed: int = 7) -> list[tuple[str, str, str]]:
    """Create the demo users and queues if missing; return (username, password, roles)."""
    logins = []
    for username, password, roles in DEMO_USERS:
        if db.scalar(select(User).where(User.username == username)) is None:
            create_user(db, username, password, roles)
        logins.append((username, password, ",".join(r.value for r in roles)))

    demos = _queue(db, "Demo: write demonstrations", TaskKind.demonstration, overlap=1, priority=1)
    ranks = _queue(db, "Demo: rank completions", TaskKind.ranking, k=4, overlap=2, priority=2)
    writes = _queue(db, "Demo: write prompts", TaskKind.write_prompt, overlap=1, priority=0)
    if db.scalar(select(Task.id).where(Task.queue_id.in_([demos.id, ranks.id, writes.id])).limit(1)):
        return logins

    rng = random.Random(seed)
    for i, (text, user_id, candidates) in enumerate(_demo_prompts(n_prompts, seed)):
        target = demos if i % 2 == 0 else ranks
        prompt = Prompt(
            queue_id=target.id,
            text=text,
            source="world",
            external_user_id=user_id,
            pii_status=PIIStatus.clear.value,
        )
        db.add(prompt)
        db.flush()
        task = Task(queue_id=target.id, kind=target.kind, prompt_id=prompt.id, overlap=target.overlap)
        db.add(task)
        db.flush()
        if target is ranks:
            picks = rng.sample(candidates, k=min(ranks.k, len(candidates)))
            for pos, completion in enumerate(picks):
                db.add(
                    Completion(
                        task_id=task.id,
                        prompt_id=prompt.id,
                        position=pos,
                        text=completion,
                        sampling_params={"source": "demo-seed"},
                    )
                )
    for hint in ("plain", "few_shot", "use_case", "plain"):
        db.add(Task(queue_id=writes.id, kind=TaskKind.write_prompt.value, hint=hint, overlap=1))
    db.flush()
    return logins
