"""A round's stages run in several processes when TRAINING_PROCESSES > 1 (through training.launch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import get_settings
from app.enums import ModelKind
from app.runs import executor


@pytest.fixture()
def launched(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what the executor hands to training.launch.run_in_processes instead of launching."""
    import training.launch

    calls: list[dict[str, Any]] = []

    def fake(stage: str, config: Any, inputs: Any, out: Path, processes: int, callbacks: Any = None,
             run: Any = None, accelerate_config: str | None = None) -> Path:  # fmt: skip
        calls.append({"stage": stage, "config": config, "inputs": dict(inputs), "processes": processes,
                      "run": run, "accelerate_config": accelerate_config,
                      "callbacks": callbacks})  # fmt: skip
        return out

    monkeypatch.setattr(training.launch, "run_in_processes", fake)
    monkeypatch.setenv("TRAINING_PROCESSES", "4")
    monkeypatch.setenv("TRAINING_ACCELERATE_CONFIG", "/etc/zero2.yaml")
    get_settings.cache_clear()
    yield calls
    monkeypatch.delenv("TRAINING_PROCESSES")
    monkeypatch.delenv("TRAINING_ACCELERATE_CONFIG")
    get_settings.cache_clear()


def test_stages_launch_with_the_configured_processes(launched: list[dict[str, Any]], tmp_path: Path) -> None:
    plan = executor.Plan(
        run_id=7, batch_dir="/b", export_batch_id=1, parent_id=1, parent_path="/base",
        config={"sft": {"epochs": 3, "betas": [0.9, 0.95]}, "ppo": {"ptx_coef": 2.0}}, gate={},
        stages=[("sft", "queued", None), ("reward", "queued", None), ("ppo", "queued", None)],
    )  # fmt: skip
    assert executor._train(plan, "sft", tmp_path / "s", "rec") == (ModelKind.policy, tmp_path / "s")  # type: ignore[arg-type]
    plan.outputs["sft"] = (2, "/sft")
    assert executor._train(plan, "reward", tmp_path / "r", "rec")[0] == ModelKind.reward  # type: ignore[arg-type]
    plan.outputs["reward"] = (3, "/rm")
    executor._train(plan, "ppo", tmp_path / "p", "rec")  # type: ignore[arg-type]
    sft, rm, ppo = launched
    assert all(c["processes"] == 4 and c["run"] == 7 and c["callbacks"] == "rec" for c in launched)
    assert all(c["accelerate_config"] == "/etc/zero2.yaml" for c in launched)
    assert (
        sft["config"].epochs == 3 and sft["config"].betas == (0.9, 0.95) and sft["inputs"]["base"] == "/base"
    )
    assert rm["inputs"]["base"] == "/sft"
    assert ppo["inputs"]["policy"] == "/sft" and ppo["inputs"]["reward_model"] == "/rm"
    assert ppo["config"].ptx_coef == 2.0


def test_one_process_stays_in_the_worker() -> None:
    assert get_settings().training_processes == 1
