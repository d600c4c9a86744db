"""`rlhf prompts import` and `rlhf export ...` against a real, committed database."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.enums import TaskKind
from app.exports.models import ExportBatch
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue


def test_import_then_export_from_the_command_line(committed_db, tmp_path: Path) -> None:
    queue = PromptQueue(name="cli queue", kind=TaskKind.demonstration.value)
    queue.guidelines = [GuidelineVersion(version=1, body_md="x")]
    committed_db.add(queue)
    committed_db.commit()
    src = tmp_path / "prompts.csv"
    src.write_text("prompt,user_id\nFirst prompt,u1\nSecond prompt,u2\n,u3\n")
    runner = CliRunner()

    result = runner.invoke(cli, ["prompts", "import", str(src), "--queue", "cli queue", "--all-or-nothing"])
    assert result.exit_code == 1 and "line 4: rejected: 'prompt' is empty" in result.output
    assert "0 accepted, 1 rejected" in result.output
    result = runner.invoke(cli, ["prompts", "import", str(src), "--queue", str(queue.id)])
    assert result.exit_code == 0, result.output
    assert "2 accepted, 1 rejected" in result.output
    committed_db.expire_all()
    assert committed_db.scalars(select(Prompt.text).order_by(Prompt.id)).all() == [
        "First prompt",
        "Second prompt",
    ]

    committed_db.rollback()  # end the read transaction (on SQLite it holds the write lock)
    result = runner.invoke(cli, ["export", "create", "--queue", "cli queue"])
    assert result.exit_code == 0, result.output
    batch = committed_db.scalar(select(ExportBatch))
    assert batch is not None
    batch_id, content_hash = batch.id, batch.content_hash
    committed_db.rollback()
    assert content_hash in result.output and "prompts=2" in result.output
    listed = runner.invoke(cli, ["export", "list"])
    assert content_hash[:16] in listed.output
    out = runner.invoke(cli, ["export", "download", str(batch_id), str(tmp_path)])
    assert out.exit_code == 0, out.output
    manifest = json.loads((tmp_path / f"export-{batch_id}" / "manifest.json").read_text())
    assert manifest["content_hash"] == content_hash and manifest["counts"]["prompts"] == 2
    bad = runner.invoke(cli, ["export", "create", "--split", "dev"])
    assert bad.exit_code != 0
