"""A round's file settings (PPO's ptx_data) name only export batches or files under DATA_DIR."""

from __future__ import annotations

import os

import pytest

from app.config import get_settings
from app.runs.schemas import RoundRequest


def _ppo(path: str) -> RoundRequest:
    return RoundRequest(stages=["ppo"], settings={"ppo": {"ptx_coef": 1.0, "ptx_data": path}})


OUTSIDE = ["/proc/self/environ", "/etc/passwd", "../../etc/hostname.txt", "/tmp/x.jsonl"]


@pytest.mark.parametrize("path", OUTSIDE)
def test_paths_outside_the_data_directory_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="ptx_data"):
        _ppo(path)


def test_an_export_batch_file_is_accepted_and_resolved() -> None:
    batch = get_settings().exports_dir / "7"
    batch.mkdir(parents=True, exist_ok=True)
    (batch / "prompts.jsonl").write_text('{"text": "a document"}\n')
    req = _ppo("exports/7/prompts.jsonl")
    assert req.settings["ppo"]["ptx_data"] == str((batch / "prompts.jsonl").resolve())
    assert _ppo(str(batch / "prompts.jsonl")).settings["ppo"]["ptx_data"].endswith("exports/7/prompts.jsonl")


def test_a_link_out_of_the_data_directory_and_other_file_kinds_are_refused() -> None:
    root = get_settings().data_dir
    root.mkdir(parents=True, exist_ok=True)
    link = root / "environ.txt"
    if not link.is_symlink():
        os.symlink("/proc/self/environ", link)
    with pytest.raises(ValueError, match="data directory"):
        _ppo(str(link))
    (root / "model.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match="jsonl"):
        _ppo(str(root / "model.bin"))
    with pytest.raises(ValueError, match="jsonl"):
        _ppo(str(root / "missing.jsonl"))


def test_rounds_without_ptx_data_are_unchanged() -> None:
    assert RoundRequest(settings={"ppo": {"ptx_coef": 0.5}}).settings == {"ppo": {"ptx_coef": 0.5}}
