"""bench.alignment's command line: a development size is checked before --out is cleared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.alignment import main


@pytest.mark.parametrize("size", ["rm=lots", "rmx=6000", "rm"])
def test_a_bad_size_is_refused_before_the_out_folder_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier-run.json").write_text("{}")
    monkeypatch.setattr(sys, "argv", ["alignment", "--size", size, "--out", str(out)])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "--size takes KEY=N with KEY one of" in capsys.readouterr().err
    assert (out / "earlier-run.json").exists()
