"""One writer of policy directories (training.checkpoints.write_policy_dir): weights, tokenizer and
a manifest that names the round's training method, synced before the rename; every trainer, the
importer and the base builder write their policies through it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.test_durability import SyncLog

pytest.importorskip("torch")


def _policy(tmp_path: Path) -> tuple[Path, Any, Any]:
    from tests.training.tiny_models import tiny_llama_dir
    from training.models import load_policy

    src = tiny_llama_dir(tmp_path / "src")
    model, tok = load_policy(src, dropout=0.1)
    model.config.use_cache = False  # as training leaves it
    return src, model, tok


def test_a_policy_is_written_loadable_synced_and_with_its_method(tmp_path: Path, monkeypatch) -> None:
    from training.checkpoints import read_manifest, verify_model_dir, write_policy_dir
    from training.models import DROPOUT_KEYS, load_policy

    src, model, tok = _policy(tmp_path)
    log = SyncLog(monkeypatch)
    out = write_policy_dir(
        tmp_path / "v1", model, tok, parent=src, run=3, method="dpo", export_batch=9,
        config={"dpo": {"beta": 0.1}}, metrics={"loss": 0.5}, dropout=0.0,
    )  # fmt: skip
    log.check(out)  # every file and the directory synced before the rename, the parent after it
    m = read_manifest(out)
    lineage = (m["kind"], m["method"], m["run"], m["parent"], m["export_batch"])
    assert lineage == ("policy", "dpo", 3, str(src), 9)
    assert m["config"] == {"dpo": {"beta": 0.1}} and m["metrics"] == {"loss": 0.5}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(m["files"])
    verify_model_dir(out)
    saved = json.loads((out / "config.json").read_text())
    assert saved["use_cache"] is True
    dropouts = [saved[k] for k in DROPOUT_KEYS if k in saved]
    assert dropouts and all(p == 0.0 for p in dropouts)
    load_policy(out)


def test_dropout_is_kept_unless_given_and_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    from training.checkpoints import write_policy_dir

    _, model, tok = _policy(tmp_path)
    out = write_policy_dir(
        tmp_path / "kept", model, tok, parent=None, run=None, method=None, export_batch=None, config={},
        metrics={},
    )  # fmt: skip
    assert json.loads((out / "config.json").read_text())["attention_dropout"] == 0.1
    assert json.loads((out / "manifest.json").read_text())["method"] is None

    def boom(*_: Any, **__: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tok, "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        write_policy_dir(
            tmp_path / "torn", model, tok, parent=None, run=None, method=None, export_batch=None, config={},
            metrics={},
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "src"]  # no directory, no temp left


def _writers() -> list[Any]:
    import training.dpo
    import training.importing
    import training.ppo
    import training.sft
    from training.world.base import build_tiny_base

    return [training.sft, training.dpo, training.ppo, training.importing, build_tiny_base]


@pytest.mark.parametrize("writer", range(5))
def test_every_policy_writer_goes_through_write_policy_dir(writer: int) -> None:
    source = inspect.getsource(_writers()[writer])
    assert "write_policy_dir(" in source
    assert "save_pretrained(" not in source and "write_model_dir(" not in source
