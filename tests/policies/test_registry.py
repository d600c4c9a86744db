"""Registry: one deployed policy, deploy and rollback as single transactions, win-rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.errors import AppError, Conflict
from app.policies import service
from app.policies.models import Deployment, ModelVersion


def _model_dir(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"kind": "policy", "metrics": {"loss": 1.5}}))
    return d


def test_register_reads_manifest_and_refuses_incomplete_dirs(db, tmp_path: Path) -> None:
    v = service.register_version(db, name="p1", kind="policy", path=_model_dir(tmp_path, "p1"))
    assert v.metrics == {"loss": 1.5} and v.manifest["kind"] == "policy"
    half = tmp_path / "half-written"
    half.mkdir()
    with pytest.raises(AppError, match="not a complete model directory"):
        service.register_version(db, name="p2", kind="policy", path=half)
    with pytest.raises(Conflict):
        service.register_version(db, name="p1", kind="policy", path=_model_dir(tmp_path, "p1b"))


def test_deploy_switches_the_one_deployed_policy_and_records_history(db, tmp_path: Path) -> None:
    a = service.register_version(db, name="a", kind="policy", path=_model_dir(tmp_path, "a"))
    b = service.register_version(db, name="b", kind="policy", path=_model_dir(tmp_path, "b"), parent_id=a.id)
    service.deploy(db, a.id)
    rec = service.deploy(db, b.id)
    assert rec.previous_version_id == a.id
    assert service.deployed_policy(db).id == b.id
    assert db.scalar(select(func.count()).where(ModelVersion.is_deployed.is_(True))) == 1
    with pytest.raises(Conflict, match="already deployed"):
        service.deploy(db, b.id)


def test_rollback_redeploys_the_previous_policy(db, tmp_path: Path) -> None:
    a = service.register_version(db, name="ra", kind="policy", path=_model_dir(tmp_path, "ra"))
    b = service.register_version(db, name="rb", kind="policy", path=_model_dir(tmp_path, "rb"))
    with pytest.raises(Conflict, match="nothing to roll back"):
        service.rollback(db)
    service.deploy(db, a.id)
    with pytest.raises(Conflict, match="no previous deployment"):
        service.rollback(db)
    service.deploy(db, b.id)
    rec = service.rollback(db)
    assert rec.action == "rollback" and service.deployed_policy(db).id == a.id
    assert db.scalar(select(func.count()).select_from(Deployment)) == 3


def test_reward_models_and_vanished_dirs_are_never_deployed(db, tmp_path: Path) -> None:
    rm = service.register_version(db, name="rm", kind="reward", path=_model_dir(tmp_path, "rm"))
    with pytest.raises(AppError, match="Only policy"):
        service.deploy(db, rm.id)
    p = service.register_version(db, name="gone", kind="policy", path=_model_dir(tmp_path, "gone"))
    (Path(p.path) / "manifest.json").unlink()
    with pytest.raises(AppError, match="not a complete model directory"):
        service.deploy(db, p.id)
    assert service.deployed_policy(db) is None


def test_wilson_interval_known_values() -> None:
    lo, hi = service.wilson_interval(85, 100)
    assert abs(lo - 0.767) < 0.002 and abs(hi - 0.907) < 0.002
    assert service.wilson_interval(0, 0) is None
    lo, hi = service.wilson_interval(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28


def test_count_preferences_lower_tier_wins_and_ties_count_apart() -> None:
    # A's completions in tiers 1 and 3, B's in 2 and 3: A1>B2, A1>B3, A3<B2, A3=B3
    wr = service.count_preferences([1, 3], [2, 3])
    assert (wr.wins, wr.losses, wr.ties) == (2, 1, 1)
    assert wr.rate == pytest.approx(2 / 3)


def test_win_rate_from_mixed_rankings(db, factory) -> None:
    from app.rankings.models import Completion, Ranking, RankingEntry

    new, parent = factory.model_version(), factory.model_version()
    queue = factory.queue("ranking", k=4)
    labeler = factory.user("labeler")
    for n, tiers in enumerate([(1, 2, 3, 4), (2, 1, 1, 3)]):
        task = factory.task(queue, completions=0)
        comps = [
            Completion(
                task_id=task.id,
                prompt_id=task.prompt_id,
                position=i,
                text=f"c{i}",
                policy_version_id=(new.id if i < 2 else parent.id),
            )
            for i in range(4)
        ]
        db.add_all(comps)
        db.flush()
        from app.db import utcnow
        from app.labeling.models import Assignment

        a = Assignment(task_id=task.id, user_id=labeler.id, status="submitted", lease_expires_at=utcnow())
        db.add(a)
        db.flush()
        r = Ranking(assignment_id=a.id, task_id=task.id, user_id=labeler.id)
        r.entries = [RankingEntry(completion_id=c.id, tier=t) for c, t in zip(comps, tiers, strict=True)]
        db.add(r)
        db.flush()
        assert n in (0, 1)
    wr = service.win_rate(db, new.id, parent.id)
    # ranking 1: new tiers (1,2) vs parent (3,4): 4 wins; ranking 2: new (2,1) vs parent (1,3):
    # 2v1 loss, 2v3 win, 1v1 tie, 1v3 win
    assert (wr.wins, wr.losses, wr.ties) == (6, 1, 1)
