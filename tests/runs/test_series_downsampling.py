"""The run page's metric series are downsampled in SQL: at most the bound, first and last kept,
read by index seeks (the statements per page depend on the number of series, not their length)."""

from __future__ import annotations

from itertools import pairwise

from sqlalchemy import insert

from app.runs import pages
from app.runs.models import RunMetric, RunStage, TrainingRun
from tests.helpers import sql_statements


def _run_with_series(db, lengths: dict[str, int]) -> TrainingRun:  # type: ignore[no-untyped-def]
    run = TrainingRun(status="running", config={"stages": ["ppo"]})
    run.stages = [RunStage(name="ppo", ordinal=0)]
    db.add(run)
    db.flush()
    rows = [
        {"run_id": run.id, "stage": "ppo", "name": name, "step": step * 3, "value": float(step)}
        for name, n in lengths.items()
        for step in range(1, n + 1)
    ]
    db.execute(insert(RunMetric), rows)
    return run


def test_long_series_are_cut_to_the_bound_keeping_first_and_last(db) -> None:
    lengths = {"kl": 5000, "loss": 1999, "reward": 201, "short": 200, "tiny": 2}
    run = _run_with_series(db, lengths)
    series = {s.name: s.points for s in pages.metric_series(db, run.id, max_points=200)}
    assert set(series) == set(lengths)
    for name, n in lengths.items():
        pts = series[name]
        steps = [s for s, _ in pts]
        assert pts[0] == (3, 1.0) and pts[-1] == (3 * n, float(n)), name
        assert steps == sorted(set(steps)), name
        if n <= 200:
            assert len(pts) == n, name
        else:
            assert 100 <= len(pts) <= 200, (name, len(pts))
            spacing = (3 * n - 3) / 199
            gaps = [b - a for a, b in pairwise(steps)]
            assert max(gaps) <= spacing + 3, (name, max(gaps))  # evenly spread, no hole in the curve


def test_the_default_bound_applies_to_the_run_page(db) -> None:
    run = _run_with_series(db, {"loss": 3000})
    (only,) = pages.metric_series(db, run.id)
    assert len(only.points) <= pages.SERIES_POINTS and only.points[-1] == (9000, 3000.0)


def test_statements_do_not_grow_with_the_series(db) -> None:
    short = _run_with_series(db, {"kl": 300, "loss": 300})
    long = _run_with_series(db, {"kl": 30_000, "loss": 30_000})
    with sql_statements() as few:
        pages.metric_series(db, short.id)
    with sql_statements() as many:
        series = pages.metric_series(db, long.id)
    assert len(few) == len(many) and [len(s.points) <= 200 for s in series] == [True, True]
