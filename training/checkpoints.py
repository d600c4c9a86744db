"""Immutable model directories: written under a temporary name with a manifest, then renamed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.data import sha256_file

MANIFEST = "manifest.json"


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The manifest.json of a model directory ({} when absent, e.g. a plain HF checkpoint).

    Plain json, no torch: the web app reads manifests through this function too.
    """
    p = Path(model_dir) / MANIFEST
    return json.loads(p.read_text()) if p.exists() else {}


def write_model_dir(
    out_dir: str | Path,
    write_files: Callable[[Path], None],
    *,
    kind: str,
    parent: str | None,
    run: str | int | None,
    export_batch: Any,
    config: dict[str, Any],
    metrics: dict[str, Any],
    method: str | None = None,
) -> Path:
    """Call write_files(tmp) to fill a temp dir, add manifest.json with file hashes, rename to out_dir.

    `method` is the training method of the round that made the model ("instructgpt", "dpo"; None
    outside a round: imports, base models, the training CLI without --method)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists; model directories are immutable")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        write_files(tmp)
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "kind": kind,
            "parent": parent,
            "run": run,
            "method": method,
            "export_batch": export_batch,
            "config": config,
            "metrics": metrics,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        # Files and directory entries reach the disk before the rename, the rename before the
        # caller registers the version: a power loss never leaves a row pointing at torn files.
        for path in [*sorted(tmp.rglob("*"), reverse=True), tmp]:
            _fsync(path)
        os.rename(tmp, out_dir)
        _fsync(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def write_policy_dir(
    out_dir: str | Path,
    model: Any,
    tokenizer: Any,
    *,
    parent: str | Path | None,
    run: str | int | None,
    method: str | None,
    export_batch: Any,
    config: dict[str, Any],
    metrics: dict[str, Any],
    dropout: float | None = None,
) -> Path:
    """Write a policy (a transformers causal LM and its tokenizer) as an immutable model directory.

    Safetensors weights, the tokenizer and the manifest (write_model_dir: temp name, fsync, rename).
    The saved config samples with the KV cache on; `dropout`, when given, replaces every dropout
    probability (a trained policy is sampled and fine-tuned further without its training dropout).
    """
    model.config.use_cache = True
    if dropout is not None:
        from training.models import set_dropout  # torch-side: this module stays plain json

        set_dropout(model.config, dropout)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return write_model_dir(
        out_dir,
        write,
        kind="policy",
        parent=None if parent is None else str(parent),
        run=run,
        method=method,
        export_batch=export_batch,
        config=config,
        metrics=metrics,
    )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_model_dir(model_dir: str | Path) -> None:
    """Raise ValueError if any file listed in the manifest is missing or changed."""
    model_dir = Path(model_dir)
    for rel, digest in read_manifest(model_dir).get("files", {}).items():
        p = model_dir / rel
        if not p.exists() or sha256_file(p) != digest:
            raise ValueError(f"{p}: missing or does not match the manifest")
