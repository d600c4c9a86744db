"""Export batches on the console: create with filters, inspect, download files or the whole batch."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.auth.access import StaffUser
from app.deps import DB
from app.enums import FLAGS, Role, Split
from app.exports import service
from app.navigation import NavItem
from app.prompts.service import list_queues
from app.quality.service import labelers
from app.web import render

router = APIRouter()

NAV = [
    NavItem(
        "Exports",
        "/exports",
        frozenset({Role.admin, Role.ops}),
        "Immutable, content-hashed training data batches: create, inspect, download.",
    )
]


@router.get("/exports", response_class=HTMLResponse)
def exports(request: Request, db: DB, _: StaffUser) -> Response:
    """Batches, newest first, and the form for a new one."""
    return render(
        request,
        "admin/exports.html",
        {
            "batches": service.list_batches(db),
            "queues": list_queues(db),
            "labelers": labelers(db),
            "flags": FLAGS,
            "splits": list(Split),
        },
    )


@router.post("/exports")
async def create(request: Request, db: DB, user: StaffUser) -> Response:
    """Write a new batch from the submitted filters, then show it."""
    form = await request.form()
    batch = service.create_from_form(db, {k: [str(v) for v in form.getlist(k)] for k in form}, user)
    return RedirectResponse(f"/exports/{batch.id}", status_code=303)


@router.get("/exports/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, db: DB, _: StaffUser, batch_id: int) -> Response:
    """A batch: hash, filters, counts, files with their hashes and download links."""
    batch = service.get_batch(db, batch_id)
    return render(request, "admin/export.html", {"batch": batch, "manifest": service.read_manifest(batch)})


@router.get("/exports/{batch_id}/files/{name}")
def batch_file(db: DB, _: StaffUser, batch_id: int, name: str) -> Response:
    """Download one file of a batch."""
    path = service.batch_file(db, batch_id, name)
    return FileResponse(path, filename=f"export-{batch_id}-{name}", media_type="application/octet-stream")


@router.get("/exports/{batch_id}/download")
def batch_archive(db: DB, _: StaffUser, batch_id: int) -> Response:
    """Download the whole batch as a tar archive (files as they are on disk)."""
    directory = Path(service.batch_file(db, batch_id, "manifest.json")).parent
    # Spills to disk past 16 MiB, so a large batch does not sit in memory.
    buf = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - closed by the generator
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(directory, arcname=f"export-{batch_id}")
    buf.seek(0)

    def chunks() -> Iterator[bytes]:
        with buf:
            yield from iter(lambda: buf.read(1 << 20), b"")

    headers = {"content-disposition": f'attachment; filename="export-{batch_id}.tar"'}
    return StreamingResponse(chunks(), media_type="application/x-tar", headers=headers)
