"""Builders for domain objects, for tests of every package."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from app.auth.models import User
from app.auth.service import create_user
from app.enums import PIIStatus, TaskKind
from app.labeling.models import Task
from app.policies.models import ModelVersion
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
from app.rankings.models import Completion

_seq = itertools.count(1)


class Factory:
    """Creates rows in a session and flushes them, with sensible defaults."""

    password = "correct-horse-battery"

    def __init__(self, db: Session) -> None:
        self.db = db

    def _n(self) -> int:
        return next(_seq)

    def user(self, *roles: str, username: str | None = None, password: str | None = None) -> User:
        """A user holding `roles` (default: labeler)."""
        return create_user(
            self.db, username or f"user{self._n()}", password or self.password, roles or ("labeler",)
        )

    def queue(self, kind: TaskKind | str = TaskKind.ranking, **fields: Any) -> PromptQueue:
        """A queue with version-1 guidelines."""
        q = PromptQueue(name=fields.pop("name", f"queue {self._n()}"), kind=TaskKind(kind).value, **fields)
        q.guidelines = [GuidelineVersion(version=1, body_md="Be *helpful*, honest and harmless.")]
        self.db.add(q)
        self.db.flush()
        return q

    def prompt(self, queue: PromptQueue | None = None, text: str | None = None, **fields: Any) -> Prompt:
        """A prompt cleared for labeling."""
        fields.setdefault("pii_status", PIIStatus.clear.value)
        p = Prompt(queue_id=queue.id if queue else None, text=text or f"Prompt number {self._n()}?", **fields)
        self.db.add(p)
        self.db.flush()
        return p

    def task(
        self,
        queue: PromptQueue,
        prompt: Prompt | None = None,
        *,
        completions: int | None = None,
        **fields: Any,
    ) -> Task:
        """A task in `queue`; ranking tasks get `queue.k` completions unless told otherwise."""
        kind = TaskKind(queue.kind)
        if prompt is None and kind is not TaskKind.write_prompt:
            prompt = self.prompt(queue)
        t = Task(
            queue_id=queue.id,
            kind=kind.value,
            prompt_id=prompt.id if prompt else None,
            overlap=fields.pop("overlap", queue.overlap),
            **fields,
        )
        self.db.add(t)
        self.db.flush()
        n = completions if completions is not None else (queue.k if kind is TaskKind.ranking else 0)
        for pos in range(n):
            assert prompt is not None
            self.db.add(
                Completion(
                    task_id=t.id,
                    prompt_id=prompt.id,
                    position=pos,
                    text=f"Completion {pos} of task {t.id}",
                    sampling_params={"temperature": 1.0},
                )
            )
        self.db.flush()
        return t

    def model_version(self, kind: str = "policy", **fields: Any) -> ModelVersion:
        """A registered model version (no files)."""
        n = self._n()
        mv = ModelVersion(
            name=fields.pop("name", f"{kind}-v{n}"),
            kind=kind,
            path=fields.pop("path", f"/nonexistent/{kind}-{n}"),
            **fields,
        )
        self.db.add(mv)
        self.db.flush()
        return mv
