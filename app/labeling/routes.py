"""The labeler's pages: home, next task, a task page, lease renewal, drafts, skip, written prompts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.access import LabelerClaim, LabelerUser
from app.auth.models import User
from app.config import get_settings
from app.demonstrations import service as writing
from app.deps import DB
from app.enums import Role, TaskKind
from app.errors import AlreadySubmitted, AppError, Conflict, NotFound
from app.labeling import fast, pages, service, stats
from app.navigation import NavItem
from app.prompts.review import screen_text
from app.sampling import service as restock
from app.web import render

router = APIRouter()

NAV = [
    NavItem(
        "Label",
        "/label",
        frozenset({Role.labeler}),
        "Write demonstrations and prompts, and rank model completions.",
    )
]

TEMPLATES = {
    TaskKind.demonstration.value: "labeling/demonstration.html",
    TaskKind.ranking.value: "labeling/ranking.html",
    TaskKind.write_prompt.value: "labeling/write_prompt.html",
}


def _flash(request: Request, message: str) -> None:
    request.session["flash"] = message


def go(request: Request, url: str) -> Response:
    """Redirect a form post; an htmx request gets HX-Redirect so the whole page changes."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def advance(request: Request, db: Session, user: User, queue_id: int | None, message: str) -> Response:
    """After a submit or skip: lease the next task of the same queue, or go home.

    The transaction holds the finished task's lock, so the lease waits for no other row
    (app.labeling.leasing); when every task left is being handed out at this moment, home says so.
    """
    if user.is_paused:
        _flash(request, f"{message} {service.NOTHING_NEXT}")
        return go(request, "/label")
    nxt = service.next_task(db, user, queue_id, wait=False)
    if nxt is None:
        _flash(request, f"{message} {service.nothing_next(db, user.id, queue_id)}")
        return go(request, "/label")
    _flash(request, f"{message} Here is the next one.")
    return go(request, f"/label/a/{nxt.id}")


def render_task(
    request: Request,
    page: pages.TaskPage,
    *,
    errors: list[str] | None = None,
    text: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a task page of any kind (also used to re-show a rejected submission)."""
    settings = get_settings()
    context: dict[str, Any] = {
        "page": page,
        "errors": errors or [],
        "flash": request.session.pop("flash", None),
        "text": page.assignment.draft_text if text is None else text,
        "max_chars": settings.max_text_chars,
        "renew_every": max(5, min(60, settings.lease_seconds // 3)),
        "skip_reasons": pages.SKIP_REASONS,
        "hints": pages.HINTS,
    }
    return render(request, TEMPLATES[page.task.kind], context, status_code=status_code)


@router.get("/label", response_class=HTMLResponse)
def home(request: Request, db: DB, user: LabelerUser) -> Response:
    """The labeler home: a next-task button per queue, own counts, time per task, agreement."""
    return render(
        request,
        "labeling/home.html",
        {
            "queues": stats.queues_for(db, user),
            "summary": stats.summary(db, user),
            "flash": request.session.pop("flash", None),
        },
    )


@router.post("/label/next")
async def take_next(
    request: Request, units: fast.UnitsDep, claim: LabelerClaim,
    queue_id: Annotated[int | None, Form()] = None,
) -> Response:
    """Lease the next task (of one queue, or the highest-priority one) and open it."""

    def work(db: Session, user: User) -> Response:
        a = service.next_task(db, user, queue_id)
        # Labelers draining a ranking queue trigger sampling (after this request commits).
        restock.request_restock_for(db, a.task.queue_id if a else queue_id)
        if a is None:
            _flash(request, "There is no task for you right now. Try again later.")
            return go(request, "/label")
        return go(request, f"/label/a/{a.id}")

    return await run_in_threadpool(fast.take_next, request, units, claim, queue_id, work)


# The one-hop routes match only numeric ids: their role check runs in the route's transaction,
# after FastAPI validates parameters, so a malformed id is simply no page (404) for everyone.
@router.get("/label/a/{assignment_id:int}", response_class=HTMLResponse)
async def task(request: Request, units: fast.UnitsDep, claim: LabelerClaim, assignment_id: int) -> Response:
    """The task page for one of the user's assignments (one thread hop, app.labeling.fast)."""
    return await run_in_threadpool(fast.show_task, request, units, claim, assignment_id)


@router.post("/label/a/{assignment_id}/renew", response_class=HTMLResponse)
def renew(request: Request, db: DB, user: LabelerUser, assignment_id: int) -> Response:
    """Extend the lease while the page is open (htmx polls this); a fragment with the state."""
    try:
        a = service.renew(db, user, assignment_id)
    except Conflict as exc:
        return render(request, "labeling/_lease.html", {"lost": exc.message}, status_code=409)
    return render(request, "labeling/_lease.html", {"assignment": a})


@router.post("/label/a/{assignment_id}/draft", response_class=HTMLResponse)
def save_draft(request: Request, db: DB, user: LabelerUser, assignment_id: int,
               text: Annotated[str, Form()] = "") -> Response:
    """Autosave the text being written (htmx); a fragment saying when it was saved, or why not."""
    try:
        a = service.save_draft(db, user, assignment_id, text)
    except (Conflict, AppError) as exc:
        if isinstance(exc, NotFound):
            raise
        return render(request, "labeling/_draft_status.html", {"problem": exc.message},
                      status_code=exc.status_code)
    return render(request, "labeling/_draft_status.html", {"assignment": a})


@router.post("/label/a/{assignment_id}/skip")
def skip(
    request: Request,
    db: DB,
    user: LabelerUser,
    assignment_id: int,
    reason: Annotated[str, Form(max_length=200)] = "",
    detail: Annotated[str, Form()] = "",
    discard_draft: Annotated[str, Form()] = "",
) -> Response:
    """Skip with a reason (confirmed when a draft exists), then go to the next task."""
    full = f"{reason.strip()}: {detail.strip()}" if reason.strip() and detail.strip() else reason
    a = service.skip(db, user, assignment_id, full, discard_draft=discard_draft in {"1", "on", "yes"})
    return advance(request, db, user, a.task.queue_id, "Skipped.")


async def _screened(request: Request) -> list[dict[str, Any]] | None:
    """Personal-data findings of the posted prompt, computed before the request's first query.

    Declared ahead of the access rule: on SQLite the first query takes the write lock, which
    screening must never hold. Only sessions that claim a user get the work done.
    """
    if "uid" not in request.session:
        return None
    text = (await request.form()).get("text")
    if not isinstance(text, str) or not 0 < len(text.strip()) <= get_settings().max_text_chars:
        return None
    return await run_in_threadpool(screen_text, text.strip())


@router.post("/label/a/{assignment_id}/prompt", response_class=HTMLResponse)
def submit_prompt(
    request: Request,
    findings: Annotated[list[dict[str, Any]] | None, Depends(_screened)],
    db: DB,
    user: LabelerUser,
    assignment_id: int,
    text: Annotated[str, Form()] = "",
) -> Response:
    """Submit a labeler-written prompt; on a problem the page comes back with the text kept."""
    try:
        prompt = writing.submit_written_prompt(db, user, assignment_id, text, findings)
    except AlreadySubmitted as exc:
        return advance(request, db, user, pages.queue_id_of_assignment(db, assignment_id), exc.message)
    except writing.TextInvalid as exc:
        page = pages.task_page(db, user, assignment_id, renew=False)
        return render_task(request, page, errors=[exc.message], text=text, status_code=422)
    except Conflict as exc:
        page = pages.task_page(db, user, assignment_id, renew=False)
        return render_task(request, page, errors=[exc.message], text=text, status_code=409)
    assert prompt.queue_id is not None
    return advance(request, db, user, prompt.queue_id, "Prompt saved.")
