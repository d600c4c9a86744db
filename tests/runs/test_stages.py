"""The stage descriptions: a stage added there (plus its trainer and config) is picked up by the
ops form, the round's validation and the executor with no other edit; the web side stays torch-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.enums import ModelKind
from app.policies import service as registry
from app.runs import pages, service, stages
from app.runs.models import TrainingRun
from app.runs.schemas import DeployGate, RoundRequest
from tests.ops.conftest import model_dir
from training.checkpoints import read_manifest

ECHO = stages.Stage(
    name="echo",
    label="Echo",
    config="tests.runs.echo_stage:EchoConfig",
    runner="tests.runs.echo_stage:run_echo",
    produces=ModelKind.policy,
    deployable=True,
    data=(),
    policy_arg="policy_dir",
    presets={"quick": {"repeat": 2}},
)


@pytest.fixture()
def echo(monkeypatch: pytest.MonkeyPatch) -> stages.Stage:
    """The echo stage and an "echo" method (SFT -> Echo), registered for one test."""
    monkeypatch.setitem(stages.STAGES, "echo", ECHO)
    monkeypatch.setitem(stages.METHODS, "echo", stages.Method("echo", "Echo", ("sft", "echo"), "Test only."))
    return ECHO


def test_every_stage_has_its_config_defaults_and_a_method() -> None:
    in_methods = {s for m in stages.METHODS.values() for s in m.stages}
    assert set(stages.STAGES) == in_methods == {"sft", "reward", "ppo", "dpo", "implicit_reward"}
    dpo = stages.get("dpo")
    assert dpo.defaults()["beta"] == 0.1 and "runtime" not in dpo.defaults()
    assert stages.describe("dpo") == "SFT -> DPO" and stages.label("evaluate") == "Evaluation"
    assert [s for s in stages.STAGES if stages.is_deployable(s)] == ["sft", "ppo", "dpo"]
    assert stages.needs_reward_model(["ppo"]) and not stages.needs_reward_model(["reward", "ppo"])
    assert not stages.needs_reward_model(["sft", "dpo"])
    assert not stages.needs_reward_model(["sft", "dpo", "implicit_reward", "ppo"])  # DPO's reward
    assert stages.describe("dpo_ppo") == "SFT -> DPO -> Implicit reward model -> PPO"
    cfg = dpo.build_config({"beta": 0.5, "betas": [0.8, 0.9], "unknown": 1})
    assert cfg.beta == 0.5 and cfg.betas == (0.8, 0.9)


def test_the_web_side_reads_the_stages_without_torch() -> None:
    code = (
        "import sys, app.main, app.runs.executor, app.ops.forms; from app.runs import stages; "
        "[s.defaults() for s in stages.STAGES.values()]; app.ops.forms.RoundForm(); "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_added_stage_appears_on_the_form_and_is_validated(
    db, factory, login, tmp_path: Path, echo, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("app.runs.service.enqueue", lambda *a, **k: None)
    factory.model_version("policy", name="echo-base", path=str(model_dir(tmp_path, "b")), is_deployed=True)
    web = login("ops")
    page = web.get("/ops").text
    assert 'name="stages" value="echo" checked' in page and 'id="settings_echo"' in page
    assert '<option value="echo" >Echo (SFT → Echo)</option>' in page
    assert "{\n  &#34;repeat&#34;: 2\n}" in page  # the quick preset's settings in the text area
    form = {"method": "echo", "stages": ["echo"], "splits": ["train"], "preset": "quick"}
    bad = web.post("/ops/rounds", data={**form, "settings_echo": '{"loud": true}'})
    assert (
        bad.status_code == 422 and "Echo settings: unknown key loud; known keys are note, repeat." in bad.text
    )
    resp = web.post("/ops/rounds", data={**form, "settings_echo": '{"note": "hi"}'})
    assert resp.status_code == 303, resp.text[:1000]
    run = db.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()))
    assert run is not None and run.method == "echo" and [s.name for s in run.stages] == ["echo", "evaluate"]
    assert run.config["echo"] == {"repeat": 2, "note": "hi"}
    with pytest.raises(ValueError, match="ppo is not a stage of Echo"):
        RoundRequest(method="echo", stages=["ppo"])


def test_the_executor_runs_an_added_stage(committed_db, tmp_path: Path, echo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.runs.executor import execute_round

    monkeypatch.setattr("app.runs.service.enqueue", lambda *a, **k: None)
    base = registry.register_version(
        committed_db, name="echo-base", kind="policy", path=model_dir(tmp_path, "b")
    )
    registry.deploy(committed_db, base.id)
    gate = DeployGate(auto_deploy=True)
    run_id = service.start_round(
        committed_db, RoundRequest(method="echo", stages=["echo"], gate=gate), None
    ).id
    committed_db.commit()

    execute_round(run_id)

    committed_db.expire_all()
    run = service.get_run(committed_db, run_id)
    assert run.status == "succeeded", (run.error_stage, run.error)
    assert [(s.name, s.status) for s in run.stages] == [("echo", "succeeded"), ("evaluate", "succeeded")]
    version = registry.get_version(committed_db, run.stages[0].output_version_id)  # type: ignore[arg-type]
    assert version.name == f"policy-r{run_id}-echo" and version.parent_id == base.id and version.is_deployed
    assert version.manifest["round"] == {"run": run_id, "method": "echo", "stage": "echo"}
    assert read_manifest(version.path)["method"] == "echo"  # the directory itself says how it was made
    assert run.stages[0].metrics == {"repeat": 2}
    assert [(s.stage, s.name) for s in pages.metric_series(committed_db, run_id)] == [
        ("echo", "loss"),
        ("echo", "repeat"),
    ]
