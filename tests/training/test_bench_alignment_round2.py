"""bench.alignment_round2 resumes: a step's model directory from an earlier invocation is reused
(model directories are immutable, so training it again would fail), an unfinished one is not."""

from __future__ import annotations

from pathlib import Path

from bench.alignment_round2 import _reuse


def test_a_finished_step_is_reused_and_an_unfinished_one_is_not(tmp_path: Path) -> None:
    assert _reuse(tmp_path / "dpo") is None  # never started
    (tmp_path / "dpo").mkdir()
    assert _reuse(tmp_path / "dpo") is None  # started, no manifest: not a finished model directory
    (tmp_path / "dpo" / "manifest.json").write_text("{}")
    assert _reuse(tmp_path / "dpo") == tmp_path / "dpo"


def test_round_one_is_the_benchmark_runs_own_and_round_r_lives_under_its_folder(tmp_path: Path) -> None:
    from bench.alignment_round2 import round_dirs

    assert round_dirs(tmp_path, 1) == (tmp_path / "ppo", tmp_path / "batch-2")  # the benchmark run's own
    assert round_dirs(tmp_path, 2) == (tmp_path / "round2" / "ppo", tmp_path / "round2" / "batch-3")
    assert round_dirs(tmp_path, 3) == (tmp_path / "round3" / "ppo", tmp_path / "round3" / "batch-4")
