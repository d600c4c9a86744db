"""What the run pages read: recent rounds, a run's metric series (downsampled in SQL), its log
tail and ETA. Reads only; every state change is in app/runs/service.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, literal, select, tuple_
from sqlalchemy.orm import Session

from app.db import utcnow
from app.enums import RunStatus
from app.runs.models import RunLog, RunMetric, TrainingRun


def list_runs(db: Session, limit: int = 50) -> list[TrainingRun]:
    """Recent rounds, newest first."""
    return list(db.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Series:
    """One metric of one stage over steps."""

    stage: str
    name: str
    points: list[tuple[int, float]]


# The run page draws at most this many points per series (it polls every 2 s while a round runs).
SERIES_POINTS = 200
MAX_SERIES = 64


def metric_series(db: Session, run_id: int, max_points: int = SERIES_POINTS) -> list[Series]:
    """Every metric series of a run by stage and name in step order, at most `max_points` each.

    Reads by index seeks only (the index on run, stage, name, step), so the cost does not grow
    with the length of the series: a long series keeps its first and last points and, between
    them, the first point at or after each of max_points evenly spaced steps.
    """
    out = []
    for stage, name in _series_keys(db, run_id):
        same = (RunMetric.run_id == run_id, RunMetric.stage == stage, RunMetric.name == name)
        head = db.execute(
            select(RunMetric.step, RunMetric.value).where(*same).order_by(RunMetric.step, RunMetric.id)
            .limit(max_points + 1)
        ).all()
        points = [(step, value) for step, value in head]
        if len(points) > max_points:
            points = _sampled(db, same, max(2, max_points))
        out.append(Series(stage, name, points))
    return out


def _series_keys(db: Session, run_id: int) -> list[tuple[str, str]]:
    """A run's (stage, name) pairs in order: one index seek each (a loose index scan), no table scan."""
    keys: list[tuple[str, str]] = []
    while len(keys) < MAX_SERIES:
        q = select(RunMetric.stage, RunMetric.name).where(RunMetric.run_id == run_id)
        if keys:
            q = q.where(tuple_(RunMetric.stage, RunMetric.name) > tuple_(*keys[-1]))
        row = db.execute(q.order_by(RunMetric.stage, RunMetric.name).limit(1)).first()
        if row is None:
            break
        keys.append((row[0], row[1]))
    return keys


def _sampled(db: Session, same: tuple[ColumnElement[bool], ...], m: int) -> list[tuple[int, float]]:
    """For m evenly spaced steps from the first to the last, the first point at or after each."""
    lo, hi = db.execute(
        select(
            select(func.min(RunMetric.step)).where(*same).scalar_subquery(),
            select(func.max(RunMetric.step)).where(*same).scalar_subquery(),
        )
    ).one()
    i = select(literal(0, Integer).label("i")).cte("idx", recursive=True)
    i = i.union_all(select(i.c.i + 1).where(i.c.i < m - 1))
    target = lo + cast(i.c.i, BigInteger) * (hi - lo) // (m - 1)

    def first_at_target(col: Any) -> Any:
        # One index seek per evenly spaced step: the first point at or after it.
        return select(col).where(*same, RunMetric.step >= target).order_by(RunMetric.step).limit(1)

    rows = db.execute(
        select(
            first_at_target(RunMetric.step).scalar_subquery(),
            first_at_target(RunMetric.value).scalar_subquery(),
        )
        .select_from(i)
        .order_by(i.c.i)
    ).all()
    points: dict[int, float] = {}
    for step, value in rows:
        points.setdefault(step, value)
    return list(points.items())


def log_tail(db: Session, run_id: int, n: int = 30) -> list[RunLog]:
    """The last n log lines, oldest first."""
    rows = list(db.scalars(select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.id.desc()).limit(n)))
    return rows[::-1]


def eta_seconds(run: TrainingRun, now: datetime | None = None) -> float | None:
    """Remaining seconds at the current pace (None before there is any progress)."""
    if run.status != RunStatus.running.value or not run.started_at or run.progress <= 0.01:
        return None
    started = (
        run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=(now or utcnow()).tzinfo)
    )
    elapsed = ((now or utcnow()) - started).total_seconds()
    return max(0.0, elapsed * (1 - run.progress) / run.progress)
