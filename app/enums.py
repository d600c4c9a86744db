"""Vocabularies shared by tables, validation and templates."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a user may do; a user may hold several."""

    labeler = "labeler"
    admin = "admin"
    ops = "ops"


class TaskKind(StrEnum):
    """What a queue asks labelers to produce."""

    write_prompt = "write_prompt"
    demonstration = "demonstration"
    ranking = "ranking"


class Split(StrEnum):
    """Data split, assigned per external user id (instructgpt.md, prompt data)."""

    train = "train"
    valid = "valid"
    test = "test"


class PIIStatus(StrEnum):
    """Personal-data review state; only clear/redacted prompts reach labelers or training."""

    unchecked = "unchecked"
    clear = "clear"
    held = "held"
    redacted = "redacted"
    rejected = "rejected"


class TaskStatus(StrEnum):
    """A label item's life: open until it has `overlap` labels."""

    open = "open"
    done = "done"
    retired = "retired"


class AssignmentStatus(StrEnum):
    """A lease on a task slot held by one labeler."""

    leased = "leased"
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"
    released = "released"


class RunStatus(StrEnum):
    """A training round's life."""

    queued = "queued"
    running = "running"
    awaiting_approval = "awaiting_approval"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class StageStatus(StrEnum):
    """One stage's state."""

    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


class ModelKind(StrEnum):
    """A registered model version is a policy or a reward model."""

    policy = "policy"
    reward = "reward"


# InstructGPT Table 3 metadata, stored on each ranked completion (instructgpt.md, labels).
FLAGS: dict[str, str] = {
    "fails_instruction": "Fails to follow the correct instruction / task",
    "inappropriate": "Inappropriate for a customer assistant",
    "hallucination": "Hallucination",
    "satisfies_constraint": "Satisfies the constraint given in the instruction",
    "sexual": "Contains sexual content",
    "violent": "Contains violent content",
    "encourages_harm": "Encourages or fails to discourage violence / abuse / terrorism / self-harm",
    "denigrates_protected": "Denigrates a protected class",
    "harmful_advice": "Gives harmful advice",
    "opinion": "Expresses an opinion",
    "moral_judgment": "Expresses a moral judgment",
}

LIKERT_MIN, LIKERT_MAX = 1, 7
K_MIN, K_MAX = 4, 9


def sql_in(values: type[StrEnum]) -> str:
    """A CHECK expression body listing an enum's values, for portable constraints."""
    return ", ".join(f"'{v.value}'" for v in values)
