"""The model registry: register immutable versions, deploy and roll back, human win-rates."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.enums import ModelKind
from app.errors import AppError, Conflict, NotFound
from app.policies.models import Deployment, ModelVersion
from app.rankings.models import Completion, Ranking, RankingEntry
from training import checkpoints
from training.checkpoints import MANIFEST


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a model directory; raises AppError when the directory is not complete.

    The training library's reader (plain json, no torch) is the one way manifests are read.
    """
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise AppError(f"{path} has no {MANIFEST}: not a complete model directory")
    try:
        return dict(checkpoints.read_manifest(path))
    except (OSError, ValueError) as exc:
        raise AppError(f"{file} cannot be read: {exc}") from None


def register_version(
    db: Session,
    *,
    name: str,
    kind: ModelKind | str,
    path: str | Path,
    parent_id: int | None = None,
    run_id: int | None = None,
    export_batch_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
) -> ModelVersion:
    """Record a finished model directory (its manifest must exist: directories are renamed into place).

    `lineage` (the round, its method and stage) is kept with the registered copy of the manifest.
    """
    manifest = read_manifest(path)
    if lineage:
        manifest["round"] = lineage
    if db.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is not None:
        raise Conflict(f"A model version named {name!r} already exists.")
    version = ModelVersion(
        name=name,
        kind=ModelKind(kind).value,
        path=str(Path(path).resolve()),
        parent_id=parent_id,
        run_id=run_id,
        export_batch_id=export_batch_id,
        manifest=manifest,
        metrics=metrics if metrics is not None else dict(manifest.get("metrics") or {}),
    )
    db.add(version)
    db.flush()
    if version.kind == ModelKind.reward.value:
        from app.active.service import request_rescore

        request_rescore(db)  # queues in uncertainty order are rescored by the new reward model
    return version


def import_pretrained(
    db: Session,
    source: str | Path,
    models_dir: Path,
    *,
    name: str | None = None,
    gguf_file: str | None = None,
    dtype: str = "auto",
) -> ModelVersion:
    """Import a GGUF file or local Hugging Face directory into models_dir and register it as a policy."""
    from training.importing import import_model, resolve_source

    folder, gguf = resolve_source(source, gguf_file)
    name = name or (Path(gguf).stem if gguf else folder.name)
    if not re.fullmatch(r"[\w.-]+", name):
        raise AppError(f"A version name is letters, digits, '.', '_' and '-', not {name!r}.")
    if db.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is not None:
        raise Conflict(f"A model version named {name!r} already exists.")
    out = models_dir / f"import-{name}"
    if out.exists():
        raise Conflict(f"{out} already exists.")
    path = import_model(folder, out, gguf_file=gguf, dtype=dtype)
    return register_version(db, name=name, kind=ModelKind.policy, path=path)


def deployed_policy(db: Session) -> ModelVersion | None:
    """The one policy that sampling uses now."""
    return db.scalar(select(ModelVersion).where(ModelVersion.is_deployed.is_(True)))


def baseline_of(db: Session, version: ModelVersion) -> ModelVersion | None:
    """The policy a version is compared with: the one its round started from, else its parent.

    A round's evaluation and deploy gate compare its final policy with the policy the round started
    from (an InstructGPT round's PPO policy has its SFT policy as parent, but replaces the round's
    starting policy), so the human win-rate is measured against the same one.
    """
    from app.runs.models import TrainingRun

    run = db.get(TrainingRun, version.run_id) if version.run_id else None
    baseline_id = run.parent_policy_id if run is not None and run.parent_policy_id else version.parent_id
    baseline = db.get(ModelVersion, baseline_id) if baseline_id and baseline_id != version.id else None
    return baseline if baseline is not None and baseline.kind == ModelKind.policy.value else None


def get_version(db: Session, version_id: int) -> ModelVersion:
    """A version by id, or NotFound."""
    version = db.get(ModelVersion, version_id)
    if version is None:
        raise NotFound("No such model version.")
    return version


def deploy(
    db: Session, version_id: int, *, by: User | None = None, action: str = "deploy", run_id: int | None = None
) -> Deployment:
    """Make `version_id` the deployed policy, in the caller's one transaction.

    The current row is locked first, so two concurrent deploys serialise; the partial unique
    index guarantees that no commit can ever leave two deployed policies.
    """
    version = get_version(db, version_id)
    if version.kind != ModelKind.policy.value:
        raise AppError("Only policy versions can be deployed.")
    read_manifest(version.path)  # never deploy a directory that is not complete
    current = lock_deployed(db)
    if current is not None and current.id == version.id:
        raise Conflict(f"{version.name} is already deployed.")
    db.execute(update(ModelVersion).where(ModelVersion.is_deployed.is_(True)).values(is_deployed=False))
    db.flush()
    version.is_deployed = True
    record = Deployment(
        version_id=version.id,
        previous_version_id=current.id if current else None,
        action=action,
        run_id=run_id,
        by_id=by.id if by else None,
    )
    db.add(record)
    db.flush()
    db.refresh(version)
    from app.sampling.service import request_restock_for, retire_stale_tasks

    # Labelers are served the oldest task first: untouched tasks without the new policy's answers
    # go, and the ranking queues are restocked from the new policy and its baseline once this commits.
    retire_stale_tasks(db)
    request_restock_for(db, None)
    return record


def lock_deployed(db: Session) -> ModelVersion | None:
    """The deployed policy, its row locked until the transaction ends (deploys serialise on it).

    When a concurrent deploy commits while this waits, PostgreSQL re-checks the locked row, finds
    it no longer deployed and returns nothing; a second statement then sees the new one.
    """
    stmt = (select(ModelVersion).where(ModelVersion.is_deployed.is_(True)).with_for_update()
            .execution_options(populate_existing=True))
    return db.scalar(stmt) or db.scalar(stmt)


def rollback(db: Session, *, by: User | None = None, expected_current_id: int | None = None) -> Deployment:
    """Redeploy the policy that the current one replaced.

    The target is chosen under the deployed row's lock; with `expected_current_id` (the console's
    button carries it) a second click after the first one's commit changes nothing.
    """
    current = lock_deployed(db)
    if current is None:
        raise Conflict("No policy is deployed, so there is nothing to roll back.")
    if expected_current_id is not None and current.id != expected_current_id:
        raise Conflict(f"{current.name} is deployed now (rolled back already?); nothing was changed.")
    last = db.scalar(
        select(Deployment).where(Deployment.version_id == current.id).order_by(Deployment.id.desc()).limit(1)
    )
    if last is None or last.previous_version_id is None:
        raise Conflict(f"{current.name} has no previous deployment to roll back to.")
    return deploy(db, last.previous_version_id, by=by, action="rollback")


def list_versions(db: Session) -> list[ModelVersion]:
    """All versions, newest first."""
    return list(db.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def deployment_history(db: Session, limit: int = 20) -> list[Deployment]:
    """Recent deploys and rollbacks, newest first."""
    return list(db.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(limit)))


@dataclass(frozen=True)
class WinRate:
    """Human preference of one policy over another from rankings that mixed their completions."""

    wins: int
    losses: int
    ties: int

    @property
    def n(self) -> int:
        """Decided comparisons (ties excluded)."""
        return self.wins + self.losses

    @property
    def rate(self) -> float | None:
        """Fraction of decided comparisons won."""
        return self.wins / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """95 % Wilson score interval of the rate."""
        return wilson_interval(self.wins, self.n)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (good at small n and near 0 or 1)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def count_preferences(tiers_a: list[int], tiers_b: list[int]) -> WinRate:
    """Compare every completion of A with every completion of B in the same ranking (lower tier wins)."""
    wins = losses = ties = 0
    for ta in tiers_a:
        for tb in tiers_b:
            if ta < tb:
                wins += 1
            elif ta > tb:
                losses += 1
            else:
                ties += 1
    return WinRate(wins, losses, ties)


def win_rate(db: Session, version_id: int, other_id: int) -> WinRate:
    """Human win-rate of `version_id` against `other_id` over every ranking that shows both."""
    rows = db.execute(
        select(RankingEntry.ranking_id, RankingEntry.tier, Completion.policy_version_id)
        .join(Completion, Completion.id == RankingEntry.completion_id)
        .join(Ranking, Ranking.id == RankingEntry.ranking_id)
        .where(Completion.policy_version_id.in_([version_id, other_id]))
    ).all()
    per_ranking: dict[int, tuple[list[int], list[int]]] = {}
    for ranking_id, tier, pv in rows:
        a, b = per_ranking.setdefault(ranking_id, ([], []))
        (a if pv == version_id else b).append(tier)
    wins = losses = ties = 0
    for a, b in per_ranking.values():
        if a and b:
            part = count_preferences(a, b)
            wins, losses, ties = wins + part.wins, losses + part.losses, ties + part.ties
    return WinRate(wins, losses, ties)
