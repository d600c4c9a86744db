"""Submitting a ranking from its task page (a plain form post that htmx enhances)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.access import LabelerClaim, LabelerUser
from app.auth.models import User
from app.deps import DB
from app.edits import service as edits
from app.errors import AlreadySubmitted, AppError, Conflict, NotFound
from app.labeling import fast, pages
from app.labeling.routes import advance, render_task
from app.rankings import service
from app.rankings.schemas import RankingIn, parse_ranking_form
from app.web import render

router = APIRouter()


async def ranking_form(request: Request) -> RankingIn:
    """The posted form (dynamic field names per completion) parsed into a RankingIn."""
    form = await request.form()
    return parse_ranking_form({k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form})


async def edit_findings(request: Request) -> list[dict[str, Any]] | None:
    """Personal-data findings of a posted edit, computed before the request's first query (see
    app.labeling.routes._screened: on SQLite screening must never hold the write lock)."""
    if "uid" not in request.session:
        return None
    text = (await request.form()).get("edit_text")
    return await run_in_threadpool(edits.screen_edit, text) if isinstance(text, str) else None


@router.post("/label/a/{assignment_id:int}/ranking", response_class=HTMLResponse)
async def submit(request: Request, findings: Annotated[list[dict[str, Any]] | None, Depends(edit_findings)],
                 units: fast.UnitsDep, claim: LabelerClaim, assignment_id: int,
                 sub: Annotated[RankingIn, Depends(ranking_form)]) -> Response:
    """Store the ranking (and its edit), then lease the next task; a problem re-shows the page as sent.

    One thread hop (app.labeling.fast); anything but a valid ranking without an edit on a live
    lease goes through the services (submit_orm).
    """
    slow = partial(submit_orm, request, assignment_id=assignment_id, sub=sub, findings=findings)
    return await run_in_threadpool(fast.submit_ranking, request, units, claim, assignment_id, sub, slow)


def submit_orm(request: Request, db: Session, user: User, *, assignment_id: int, sub: RankingIn,
               findings: list[dict[str, Any]] | None = None) -> Response:
    """The ranking submit through the ORM services (edits, double submits, lost leases, invalid input)."""
    try:
        ranking = edits.submit(db, user, assignment_id, sub, findings)
    except AlreadySubmitted as exc:
        return advance(request, db, user, pages.queue_id_of_assignment(db, assignment_id), exc.message)
    except (service.RankingInvalid, Conflict) as exc:
        page = pages.with_submission(pages.task_page(db, user, assignment_id, renew=False), sub)
        errors = exc.errors if isinstance(exc, service.RankingInvalid) else [exc.message]
        return render_task(request, page, errors=errors, status_code=exc.status_code)
    return advance(request, db, user, pages.queue_id_of(db, ranking.task_id), "Ranking saved.")


@router.post("/label/a/{assignment_id}/ranking/draft", response_class=HTMLResponse)
def save_draft(request: Request, db: DB, user: LabelerUser, assignment_id: int,
               sub: Annotated[RankingIn, Depends(ranking_form)]) -> Response:
    """Autosave the ranking in progress (htmx); a fragment saying when it was saved, or why not."""
    try:
        a = service.save_ranking_draft(db, user, assignment_id, sub)
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return render(request, "labeling/_draft_status.html", {"problem": exc.message},
                      status_code=exc.status_code)
    return render(request, "labeling/_draft_status.html", {"assignment": a})
