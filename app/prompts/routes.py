"""Admin pages for queues, imports and personal-data review, and the ingestion API."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as PostedFile

from app.auth import access
from app.auth.access import AdminUser
from app.auth.models import ApiToken
from app.config import get_settings
from app.deps import DB, PostedForm, SettingsDep
from app.errors import AppError
from app.prompts import review, service
from app.prompts.importer import Screening, screen_upload
from app.web import render

router = APIRouter()
TokenWrite = Annotated[ApiToken, Depends(access.api_token("prompts:write"))]


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/admin/queues", response_class=HTMLResponse)
def queues(request: Request, db: DB, _: AdminUser) -> Response:
    """All queues with their progress."""
    return render(request, "admin/queues.html", {"rows": service.queues_with_progress(db)})


@router.get("/admin/queues/new", response_class=HTMLResponse)
def new_queue(request: Request, _: AdminUser) -> Response:
    """The form for a new queue."""
    return render(request, "admin/queue_form.html", service.queue_form_context(None))


@router.post("/admin/queues")
def create_queue(request: Request, db: DB, admin: AdminUser, form: PostedForm) -> Response:
    """Create a queue, then show it; bad input re-shows the form with what was typed."""
    data = dict(form)
    try:
        queue = service.create_queue(db, data, admin)
    except AppError as exc:
        ctx = service.queue_form_context(None, data, exc.message)
        return render(request, "admin/queue_form.html", ctx, status_code=exc.status_code)
    return _see(f"/admin/queues/{queue.id}")


@router.get("/admin/queues/{queue_id}", response_class=HTMLResponse)
def queue_page(request: Request, db: DB, _: AdminUser, queue_id: int) -> Response:
    """A queue: progress, labels per hour, who is working, agreement, guidelines, imports."""
    return render(request, "admin/queue.html", service.queue_overview(db, queue_id))


@router.get("/admin/queues/{queue_id}/progress", response_class=HTMLResponse)
def queue_progress(request: Request, db: DB, _: AdminUser, queue_id: int) -> Response:
    """The self-refreshing progress fragment of a queue page."""
    return render(request, "admin/_progress.html", service.queue_overview(db, queue_id))


@router.get("/admin/queues/{queue_id}/edit", response_class=HTMLResponse)
def edit_queue(request: Request, db: DB, _: AdminUser, queue_id: int) -> Response:
    """The form to change a queue's settings and guidelines."""
    return render(
        request, "admin/queue_form.html", service.queue_form_context(service.get_queue(db, queue_id))
    )


@router.post("/admin/queues/{queue_id}")
def update_queue(request: Request, db: DB, admin: AdminUser, queue_id: int, form: PostedForm) -> Response:
    """Save a queue's settings (changed guidelines become a new version); bad input re-shows the form."""
    data = dict(form)
    queue = service.get_queue(db, queue_id)
    try:
        service.update_queue(db, queue_id, data, admin)
    except AppError as exc:
        ctx = service.queue_form_context(queue, data, exc.message)
        return render(request, "admin/queue_form.html", ctx, status_code=exc.status_code)
    return _see(f"/admin/queues/{queue_id}")


@router.post("/admin/queues/{queue_id}/pause")
def pause_queue(db: DB, _: AdminUser, queue_id: int) -> Response:
    """Stop handing out this queue's tasks."""
    service.set_paused(db, queue_id, True)
    return _see(f"/admin/queues/{queue_id}")


@router.post("/admin/queues/{queue_id}/resume")
def resume_queue(db: DB, _: AdminUser, queue_id: int) -> Response:
    """Hand out this queue's tasks again."""
    service.set_paused(db, queue_id, False)
    return _see(f"/admin/queues/{queue_id}")


@router.get("/admin/queues/{queue_id}/guidelines/{version}", response_class=HTMLResponse)
def guideline_version(request: Request, db: DB, _: AdminUser, queue_id: int, version: int) -> Response:
    """One past version of a queue's guidelines."""
    return render(
        request,
        "admin/guideline.html",
        {"queue": service.get_queue(db, queue_id), "guideline": service.get_guideline(db, queue_id, version)},
    )


@router.post("/admin/queues/{queue_id}/write-tasks")
def add_write_tasks(
    db: DB,
    _: AdminUser,
    queue_id: int,
    count: Annotated[int, Form(ge=1, le=10_000)] = 10,
    hint: Annotated[str, Form(max_length=32)] = "plain",
) -> Response:
    """Add write-a-prompt tasks to a write-prompt queue."""
    service.add_write_tasks(db, queue_id, count, hint)
    return _see(f"/admin/queues/{queue_id}")


async def _screened_upload(request: Request) -> Screening | None:
    """Personal-data findings of every row of an uploaded file, computed before the request's
    first query.

    Declared ahead of the access rule: on SQLite the first query takes the write lock, which
    screening must never hold. Only sessions that claim a user get the work done.
    """
    if "uid" not in request.session:
        return None
    upload = (await request.form()).get("file")
    if not isinstance(upload, PostedFile):
        return None
    max_chars = get_settings().max_text_chars
    return await run_in_threadpool(screen_upload, upload.filename or "", upload.file, max_chars)


async def _screened_ingest(request: Request) -> Screening | None:
    """Personal-data findings of an ingestion body, computed before the request's first query
    (the token check is one). Only requests that carry a bearer token get the work done; the
    body is under the small-body limit, and screening is linear in it."""
    if not request.headers.get("authorization", "").lower().startswith("bearer "):
        return None
    try:
        payload = json.loads(await request.body())
    except (ValueError, RecursionError):
        return None
    return await run_in_threadpool(service.screen_ingest, payload, get_settings())


@router.post("/admin/queues/{queue_id}/imports")
def import_prompts(
    screening: Annotated[Screening | None, Depends(_screened_upload)],
    db: DB,
    settings: SettingsDep,
    admin: AdminUser,
    queue_id: int,
    file: Annotated[UploadFile, File()],
    mode: Annotated[str, Form(max_length=32)] = "valid_rows",
) -> Response:
    """Import an uploaded JSONL or CSV file, then show its report."""
    imp = service.import_file(
        db, settings, queue_id, file.filename or "", file.file, mode, admin, size=file.size,
        screening=screening,
    )
    return _see(f"/admin/imports/{imp.id}")


@router.get("/admin/imports", response_class=HTMLResponse)
def imports(request: Request, db: DB, _: AdminUser) -> Response:
    """The latest imports of every queue and the API."""
    return render(request, "admin/imports.html", {"imports": service.recent_imports(db, limit=100)})


@router.get("/admin/imports/{import_id}", response_class=HTMLResponse)
def import_report(request: Request, db: DB, _: AdminUser, import_id: int) -> Response:
    """What an import took and what it rejected, by line."""
    imp = service.get_import(db, import_id)
    return render(
        request,
        "admin/import.html",
        {"imp": imp, "queue": service.get_queue(db, imp.queue_id) if imp.queue_id else None},
    )


@router.get("/admin/pii", response_class=HTMLResponse)
def pii_queue(request: Request, db: DB, _: AdminUser) -> Response:
    """Prompts held for personal-data review."""
    return render(
        request, "admin/pii_list.html", {"prompts": review.held_prompts(db), "total": review.count_held(db)}
    )


@router.get("/admin/pii/{prompt_id}", response_class=HTMLResponse)
def pii_review(request: Request, db: DB, _: AdminUser, prompt_id: int) -> Response:
    """One held prompt with its findings highlighted, and the redact / clear / reject forms."""
    prompt = review.get_held(db, prompt_id)
    return render(
        request,
        "admin/pii_review.html",
        {
            "prompt": prompt,
            "pieces": review.highlight(prompt),
            "findings": sorted(prompt.pii_findings, key=lambda f: int(f["start"])),
        },
    )


@router.post("/admin/pii/{prompt_id}/redact", response_class=HTMLResponse)
def pii_redact(request: Request, db: DB, admin: AdminUser, prompt_id: int, form: PostedForm) -> Response:
    """Show the exact text a redaction would release; release it once the admin confirms that text."""
    chosen = [int(v) for v in form.getlist("finding") if isinstance(v, str) and v.isdigit()]
    extra, note = str(form.get("extra", "")), str(form.get("note", ""))
    confirmed = str(form.get("confirm", ""))
    if not confirmed:
        text, spans = review.preview_redaction(db, prompt_id, chosen, extra)
        context = {"prompt": review.get_held(db, prompt_id), "text": text, "spans": spans, "chosen": chosen,
                   "extra": extra, "note": note, "digest": review.digest(text)}
        return render(request, "admin/pii_preview.html", context)
    review.redact_prompt(db, prompt_id, admin, chosen, extra, note[:2000], confirmed_digest=confirmed)
    return _see("/admin/pii")


@router.post("/admin/pii/{prompt_id}/clear")
def pii_clear(
    db: DB, admin: AdminUser, prompt_id: int, note: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    """Release a held prompt unchanged (a false positive)."""
    review.clear_prompt(db, prompt_id, admin, note)
    return _see("/admin/pii")


@router.post("/admin/pii/{prompt_id}/reject")
def pii_reject(
    db: DB, admin: AdminUser, prompt_id: int, note: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    """Reject a held prompt: its text is dropped and nobody sees it."""
    review.reject_prompt(db, prompt_id, admin, note)
    return _see("/admin/pii")


INGEST_EXAMPLE = {
    "queue": "Customer prompts",
    "mode": "valid_rows",
    "prompts": [
        {"prompt": "Explain tides to a child.", "user_id": "customer-17", "meta": {"app": "web"}},
        {
            "messages": [
                {"role": "system", "content": "You are a patient tutor."},
                {"role": "user", "content": "What makes the tides?"},
                {"role": "assistant", "content": "Mostly the Moon's pull on the oceans."},
                {"role": "user", "content": "Then why are there two a day?"},
            ],
            "user_id": "customer-17",
        },
    ],
}


INGEST_BODY = {
    "type": "object",
    "required": ["queue", "prompts"],
    "properties": {
        "queue": {
            "oneOf": [{"type": "integer"}, {"type": "string", "minLength": 1}],
            "description": "queue id or name",
        },
        "mode": {"type": "string", "enum": ["valid_rows", "all_or_nothing"], "default": "valid_rows"},
        "prompts": {
            "type": "array",
            "minItems": 1,
            "maxItems": service.MAX_API_PROMPTS,
            "items": {
                "type": "object",
                "oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
                "properties": {
                    "prompt": {"type": "string"},
                    "messages": {
                        "type": "array",
                        "description": "a conversation (OpenAI/TRL format) ending with the user's turn",
                        "items": {
                            "type": "object",
                            "required": ["role", "content"],
                            "properties": {
                                "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                                "content": {"type": "string"},
                            },
                        },
                    },
                    "user_id": {"type": "string", "description": "the end user the prompt came from"},
                    "meta": {"type": "object"},
                },
            },
        },
    },
}
_ERROR = {
    "application/json": {
        "schema": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
    }
}



@router.post(
    "/api/prompts",
    status_code=201,
    summary="Ingest prompts into a queue",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": INGEST_BODY, "example": INGEST_EXAMPLE}},
        },
        "security": [{"bearer": []}],
    },
    responses={
        400: {"description": "the body is not what the API takes", "content": _ERROR},
        401: {"description": "no token, or an unknown or revoked one", "content": _ERROR},
        403: {"description": "the token lacks the prompts:write scope", "content": _ERROR},
        404: {"description": "no such queue", "content": _ERROR},
        413: {"description": "the body is past the upload limit", "content": _ERROR},
        422: {"description": "no row was accepted; the report says why, by row"},
    },
)
def ingest(
    screening: Annotated[Screening | None, Depends(_screened_ingest)],
    db: DB,
    settings: SettingsDep,
    token: TokenWrite,
    payload: Annotated[dict[str, Any], Body()],
) -> JSONResponse:
    """Ingest prompts: {"queue", "mode"?, "prompts": [{"prompt" | "messages", "user_id"?, "meta"?}]}.

    422 when no row was valid.
    """
    imp = service.ingest(db, settings, token, payload, screening)
    body = {
        "import_id": imp.id,
        "status": imp.status,
        "accepted": imp.accepted,
        "rejected": imp.rejected,
        "duplicates": imp.duplicates,
        "capped": imp.capped,
        "held_for_pii": imp.held_for_pii,
        "report": imp.report,
    }
    refused = imp.status == "failed" or (imp.accepted == 0 and imp.rejected > 0)
    return JSONResponse(body, status_code=422 if refused else 201)
