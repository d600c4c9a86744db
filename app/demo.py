"""Demo data for `make run`: users with printed logins and queues with work in them."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.auth.service import create_user
from app.enums import PIIStatus, Role, TaskKind
from app.labeling.models import Task
from app.policies.models import ModelVersion
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


def _demo_prompts(n: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(prompt, external user id, candidate completions) from the simulated world (pure Python)."""
    from training.world import candidate_completions, make_prompts

    rng = random.Random(seed)
    return [(p.text, p.user_id, candidate_completions(p, 9, rng)) for p in make_prompts(n, seed=seed)]


def ensure_demo_policy(db: Session, data_dir: Path, size: str = "tiny") -> ModelVersion:
    """Build (once, cached) the world's small base model and deploy it if no policy is deployed.

    The base model is fluent but unaligned: it continues instructions the way its corpus does.
    """
    from app.policies import service as registry
    from training.models import ensure_base_model

    path = ensure_base_model(data_dir / "cache", size=size)
    version = db.scalar(select(ModelVersion).where(ModelVersion.path == str(Path(path).resolve())))
    if version is None:
        version = registry.register_version(
            db, name=f"base-{size}-{Path(path).name[-10:]}", kind="policy", path=path
        )
    if registry.deployed_policy(db) is None:
        registry.deploy(db, version.id, action="deploy")
    return version


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
    # Mixing the deployed policy with its parent makes every ranking a comparison between versions.
    ranks = _queue(
        db,
        "Demo: rank completions",
        TaskKind.ranking,
        k=4,
        overlap=2,
        priority=2,
        low_water=8,
        sampling={"mix": "deployed+parent", "temperature": 1.0, "max_new_tokens": 48},
    )
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
        if target is ranks and (i // 2) % 2 == 1:
            continue  # left for the sampling worker to fill from the deployed policy
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
