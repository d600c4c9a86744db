"""The library's core never imports the simulated world (training.world): the demo's base builder
lives in training.world.base, and PPO's oracle score and PPO-ptx corpus come in as hooks from the
caller (the app's stage description, the training CLI, the benchmarks)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "training"
# Callers, not core: the training CLI drives the world on purpose.
CALLERS = {"cli.py", "__main__.py"}
CORE = sorted(p for p in ROOT.glob("*.py") if p.name not in CALLERS)


def _world_imports(path: Path) -> list[str]:
    """Every import of training.world in a module, at any depth (lazy imports inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n.startswith("training.world")]
    return found


def test_no_core_module_imports_the_world_even_lazily() -> None:
    assert len(CORE) > 15
    assert [hit for path in CORE for hit in _world_imports(path)] == []


def test_importing_the_core_loads_no_world_module() -> None:
    modules = ", ".join(f"training.{p.stem}" for p in CORE if p.stem != "__init__")
    code = (
        f"import sys, training, {modules}\n"
        "from training.config import PPOConfig\n"
        "try:\n"  # PPO-ptx without text: it used to fall back to the world's corpus
        "    training.ppo.load_ptx_rows(PPOConfig(ptx_coef=1.0), tok=None)\n"
        "except ValueError:\n"
        "    pass\n"
        "bad = sorted(m for m in sys.modules if m.startswith('training.world')); print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ppo_ptx_without_text_or_hook_is_a_clear_error() -> None:
    pytest.importorskip("torch")
    from training.config import PPOConfig
    from training.ppo import load_ptx_rows

    with pytest.raises(ValueError, match="ptx_data"):
        load_ptx_rows(PPOConfig(ptx_coef=1.0), tok=None)


def test_the_ppo_stage_hands_the_worker_the_world_hooks() -> None:
    from app.runs import stages
    from training.callbacks import resolve_hook
    from training.world.hooks import PPO_HOOKS, oracle_metrics

    assert stages.get("ppo").hooks == PPO_HOOKS
    assert resolve_hook(PPO_HOOKS["extra_metrics"]) is oracle_metrics
    assert oracle_metrics(["What is 3 plus 4?"], ["The answer is 7."]) == {"oracle_score": 1.0}
    assert oracle_metrics(["Not a world prompt at all"], ["x"])["oracle_score"] != 0.0  # NaN: no world prompt
