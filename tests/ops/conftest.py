"""Builders for the ops console tests: runs with stages, metrics and logs; complete model directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.db import utcnow
from app.policies.models import ModelVersion
from app.runs.models import RunLog, RunMetric, RunStage, TrainingRun


def make_run(
    db: Session,
    status: str = "running",
    stages: tuple[str, ...] = ("sft", "reward", "ppo", "evaluate"),
    **fields: Any,
) -> TrainingRun:
    """A run with its stages (all pending unless changed afterwards)."""
    fields.setdefault("started_at", utcnow())
    fields.setdefault("heartbeat_at", utcnow())
    run = TrainingRun(status=status, config={"stages": list(stages), "preset": "quick"}, **fields)
    run.stages = [RunStage(name=n, ordinal=i) for i, n in enumerate(stages)]
    db.add(run)
    db.flush()
    return run


def add_series(db: Session, run: TrainingRun, stage: str, name: str, values: list[float]) -> None:
    """One metric series, one point per step."""
    db.add_all(
        RunMetric(run_id=run.id, stage=stage, name=name, step=i, value=v) for i, v in enumerate(values)
    )
    db.flush()


def add_log(db: Session, run: TrainingRun, line: str, stage: str | None = None) -> None:
    """One log line."""
    db.add(RunLog(run_id=run.id, stage=stage, line=line))
    db.flush()


def model_dir(root: Path, name: str) -> Path:
    """A complete model directory (its manifest written), as the registry requires for deploys."""
    d = root / name
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"kind": "policy"}))
    return d


def policy(factory: Any, root: Path, name: str, **fields: Any) -> ModelVersion:
    """A registered policy with a complete directory."""
    return factory.model_version("policy", name=name, path=str(model_dir(root, name)), **fields)


@pytest.fixture()
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Tasks the runs service would send after commit (recorded instead of sent)."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(
        "app.runs.service.enqueue", lambda db, name, *a, queue: sent.append((name, a))
    )
    return sent
