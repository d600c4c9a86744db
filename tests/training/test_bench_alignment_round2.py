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
