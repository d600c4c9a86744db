"""Export batches on the console: create with filters, inspect, download files or the whole batch."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.auth.access import StaffUser
from app.deps import DB, PostedForm
from app.enums import FLAGS, Role, Split
from app.exports import jobs, service
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
            "jobs": jobs.live_jobs(db),
            "queues": list_queues(db),
            "labelers": labelers(db),
            "flags": FLAGS,
            "splits": list(Split),
        },
    )


@router.post("/exports")
def create(db: DB, user: StaffUser, form: PostedForm) -> Response:
    """Queue a new batch from the submitted filters (a worker writes it); show the job's progress."""
    filters = service.filters_from_form({k: [str(v) for v in form.getlist(k)] for k in form})
    job = jobs.start_export(db, filters, user)
    return RedirectResponse(f"/exports/jobs/{job.id}", status_code=303)


@router.get("/exports/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, db: DB, _: StaffUser, job_id: int, part: str = "") -> Response:
    """An export job's progress (part=live: the fragment that polls itself until the job ends)."""
    job = jobs.get_job(db, job_id)
    response = render(request, "admin/export_job.html", {"job": job, "part": part})
    if part == "live" and job.batch_id and request.headers.get("hx-request") == "true":
        response.headers["HX-Redirect"] = f"/exports/{job.batch_id}"
    return response


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
