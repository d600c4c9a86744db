"""`rlhf rounds` and `rlhf versions` against the test database (real commits)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.errors import AppError, Conflict
from app.exports.models import ExportBatch
from app.policies.models import ModelVersion
from app.runs.models import TrainingRun
from tests.factories import Factory
from tests.ops.conftest import model_dir


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_versions_list_deploy_and_rollback(committed_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = Factory(committed_db)
    a = f.model_version("policy", name="cli-a", path=str(model_dir(tmp_path, "a")))
    b = f.model_version("policy", name="cli-b", path=str(model_dir(tmp_path, "b")), parent_id=a.id)
    committed_db.commit()
    assert "deployed version" in _run("versions", "deploy", str(a.id))
    assert f"deployed version {b.id} (was {a.id})" in _run("versions", "deploy", str(b.id))
    listing = _run("versions", "list")
    assert f"* {b.id}\tcli-b\tpolicy\tparent={a.id}" in listing and f"  {a.id}\tcli-a" in listing
    with pytest.raises(Conflict, match="already deployed"):
        _run("versions", "deploy", str(b.id))
    assert f"rolled back to version {a.id}" in _run("versions", "rollback")
    committed_db.expire_all()
    assert committed_db.scalar(select(ModelVersion.name).where(ModelVersion.is_deployed.is_(True))) == "cli-a"


def test_rounds_start_and_list(committed_db, tmp_path: Path, enqueued) -> None:  # type: ignore[no-untyped-def]
    f = Factory(committed_db)
    base = f.model_version("policy", name="cli-base", path=str(model_dir(tmp_path, "base")), is_deployed=True)
    queue = f.queue("demonstration")
    committed_db.commit()
    out = _run("rounds", "start", "--queue", str(queue.id), "--stages", "sft,reward", "--auto-deploy")
    run = committed_db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert run is not None and f"round {run.id} queued (instructgpt: sft -> reward -> evaluate)" in out
    assert f"/ops/runs/{run.id}" in out
    assert run.parent_policy_id == base.id and run.deploy_gate["auto_deploy"] is True
    batch = committed_db.get(ExportBatch, run.export_batch_id)
    assert batch is not None and batch.filters["queues"] == [queue.id]
    assert enqueued == [("runs.run_round", (run.id,))]
    run_id = run.id
    committed_db.rollback()  # end the read transaction: on SQLite it would hold the write lock
    assert f"{run_id}\tqueued\t0%\tinstructgpt\tsft,reward,evaluate" in _run("rounds", "list")


def test_rounds_start_refuses_non_contiguous_stages(committed_db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AppError, match="contiguous"):
        _run("rounds", "start", "--stages", "sft,ppo")
    assert committed_db.scalar(select(TrainingRun.id)) is None


def test_rounds_start_with_the_dpo_method(committed_db, tmp_path: Path, enqueued) -> None:  # type: ignore[no-untyped-def]
    f = Factory(committed_db)
    f.model_version("policy", name="cli-dpo-base", path=str(model_dir(tmp_path, "base")), is_deployed=True)
    committed_db.commit()
    out = _run("rounds", "start", "--method", "dpo")
    run = committed_db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert run is not None and f"round {run.id} queued (dpo: sft -> dpo -> evaluate)" in out
    assert run.method == "dpo" and run.config["dpo"]["beta"] == 0.1 and "ppo" not in run.config
    committed_db.rollback()
    with pytest.raises(AppError, match="reward is not a stage of DPO"):
        _run("rounds", "start", "--method", "dpo", "--stages", "sft,reward")
    with pytest.raises(AppError, match="method must be one of instructgpt, dpo"):
        _run("rounds", "start", "--method", "kto")


def test_rounds_start_takes_stage_settings(committed_db, tmp_path: Path, enqueued) -> None:  # type: ignore[no-untyped-def]
    f = Factory(committed_db)
    f.model_version("policy", name="cli-set-base", path=str(model_dir(tmp_path, "base")), is_deployed=True)
    committed_db.commit()
    _run("rounds", "start", "--set", "sft.epochs=2", "--set", "ppo.kl_coef=0.05", "--set", "sft.lr=3e-5")
    run = committed_db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert run is not None and run.config["sft"]["epochs"] == 2 and run.config["sft"]["lr"] == 3e-5
    assert run.config["ppo"]["kl_coef"] == 0.05
    assert run.config["reward"]["epochs"] == 1  # the preset's, untouched
    committed_db.rollback()
    for args, message in (
        (["--set", "sft.epochs"], "--set takes STAGE.KEY=VALUE"),
        (["--set", "epochs=2"], "--set takes STAGE.KEY=VALUE"),
        (["--set", "sft.epoch=2"], "SFT settings: unknown key epoch; known keys are"),
        (["--set", "sft.epochs=two"], "SFT settings: epochs should look like"),
        (["--set", "sft.lr=-1"], "SFT settings: lr must be"),
        (["--set", "rl.lr=1"], "no stage is named 'rl'"),
        (["--method", "dpo", "--set", "ppo.lr=1e-5"], "ppo is not a stage of this round"),
    ):
        with pytest.raises(AppError, match=message):
            _run("rounds", "start", *args)
    assert committed_db.scalar(select(TrainingRun.id).where(TrainingRun.id > run.id)) is None
