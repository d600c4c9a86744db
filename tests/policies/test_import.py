"""`rlhf models import`: a local model directory becomes a registered (and optionally deployed) policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.errors import AppError, Conflict
from app.policies import service
from app.policies.models import ModelVersion
from tests.training.tiny_models import tiny_llama_dir


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_models_import_registers_and_deploys_a_local_directory(committed_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tiny_llama_dir(tmp_path / "tiny-llama")
    out = _run("models", "import", str(src), "--name", "tiny-llama", "--dtype", "float32", "--deploy")
    version = committed_db.scalar(select(ModelVersion).where(ModelVersion.name == "tiny-llama"))
    assert version is not None and version.is_deployed and version.kind == "policy"
    assert f"policy #{version.id} tiny-llama (deployed)" in out
    path = Path(version.path)
    assert (path / "manifest.json").exists() and (path / "chat_template.jinja").exists()
    assert version.manifest["config"]["import"]["source"] == str(src.resolve())
    committed_db.rollback()  # end the read: on SQLite it holds the write lock the next import needs
    with pytest.raises(Conflict, match="already exists"):
        _run("models", "import", str(src), "--name", "tiny-llama")


def test_import_refuses_bad_names_and_sources(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")  # resolves; the name is refused before loading
    with pytest.raises(AppError, match="version name"):
        service.import_pretrained(db, tmp_path, tmp_path / "models", name="../escape")
    with pytest.raises(FileNotFoundError):
        service.import_pretrained(db, tmp_path / "nothing", tmp_path / "models")
    (tmp_path / "m.gguf").write_text("<html>Not Found</html>")  # a download that saved an error page
    with pytest.raises(ValueError, match="is not a GGUF file"):  # `rlhf models import` prints it in one line
        service.import_pretrained(db, tmp_path, tmp_path / "models")
