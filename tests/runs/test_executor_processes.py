"""A round's stages run in several processes when TRAINING_PROCESSES > 1 (through training.launch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import get_settings
from app.enums import ModelKind
from app.runs import executor, stages


@pytest.fixture()
def launched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record what the executor hands to training.launch.run_in_processes instead of launching."""
    import training.launch

    calls: list[dict[str, Any]] = []

    def fake(runner: str, config: Any, kwargs: Any, processes: int, callbacks: Any = None,
             accelerate_config: str | None = None) -> Path:  # fmt: skip
        calls.append({"runner": runner, "config": config, "kwargs": dict(kwargs), "processes": processes,
                      "accelerate_config": accelerate_config, "callbacks": callbacks})  # fmt: skip
        return Path(kwargs["out_dir"])

    monkeypatch.setattr(training.launch, "run_in_processes", fake)
    monkeypatch.setenv("TRAINING_PROCESSES", "4")
    monkeypatch.setenv("TRAINING_ACCELERATE_CONFIG", "/etc/zero2.yaml")
    get_settings.cache_clear()
    yield calls
    monkeypatch.delenv("TRAINING_PROCESSES")
    monkeypatch.delenv("TRAINING_ACCELERATE_CONFIG")
    get_settings.cache_clear()


def _launch(plan: executor.Plan, name: str, out: Path) -> Path:
    stage = stages.get(name)
    return executor._run(stage, executor._runner_kwargs(plan, stage, out, "rec"))  # type: ignore[arg-type]


def test_stages_launch_with_the_configured_processes(launched: list[dict[str, Any]], tmp_path: Path) -> None:
    plan = executor.Plan(
        run_id=7, batch_dir="/b", parent_id=1, parent_path="/base",
        config={"sft": {"epochs": 3, "betas": [0.9, 0.95]}, "ppo": {"ptx_coef": 2.0}},
        stages=[("sft", "queued"), ("reward", "queued"), ("ppo", "queued")], method="instructgpt",
    )  # fmt: skip
    assert _launch(plan, "sft", tmp_path / "s") == tmp_path / "s"
    plan.outputs["sft"] = executor.Output(2, "/sft", ModelKind.policy.value)
    _launch(plan, "reward", tmp_path / "r")
    plan.outputs["reward"] = executor.Output(3, "/rm", ModelKind.reward.value)
    _launch(plan, "ppo", tmp_path / "p")
    sft, rm, ppo = launched
    assert [c["runner"] for c in launched] == [stages.get(n).runner for n in ("sft", "reward", "ppo")]
    assert all(c["processes"] == 4 and c["kwargs"]["run"] == 7 and c["callbacks"] == "rec" for c in launched)
    assert all(c["accelerate_config"] == "/etc/zero2.yaml" for c in launched)
    assert sft["config"].epochs == 3 and sft["config"].betas == (0.9, 0.95)
    assert sft["kwargs"]["base_model_dir"] == "/base"
    assert rm["kwargs"]["base_model_dir"] == "/sft"
    assert ppo["kwargs"]["policy_dir"] == "/sft" and ppo["kwargs"]["reward_model_dir"] == "/rm"
    assert ppo["config"].ptx_coef == 2.0
    assert all(c["kwargs"]["method"] == "instructgpt" for c in launched)  # into every manifest
    # the world's hooks cross the process boundary as import paths (JSON), never as objects
    assert ppo["kwargs"]["extra_metrics"] == "training.world.hooks:oracle_metrics"
    assert ppo["kwargs"]["ptx_docs"] == "training.world.hooks:pretraining_docs"
    assert "extra_metrics" not in sft["kwargs"]


def test_one_process_stays_in_the_worker() -> None:
    assert get_settings().training_processes == 1
