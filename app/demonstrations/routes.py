"""Submitting a demonstration from its task page."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.access import LabelerClaim
from app.auth.models import User
from app.demonstrations import service
from app.errors import AlreadySubmitted, Conflict
from app.labeling import fast, pages
from app.labeling.routes import advance, render_task

router = APIRouter()


@router.post("/label/a/{assignment_id:int}/demonstration", response_class=HTMLResponse)
async def submit(request: Request, units: fast.UnitsDep, claim: LabelerClaim, assignment_id: int,
                 text: Annotated[str, Form()] = "") -> Response:
    """Store the demonstration, then lease the next task; a problem re-shows the page, text kept.

    One thread hop (app.labeling.fast): valid text on a live lease takes the hot path, anything
    else the services (submit_orm)."""
    slow = partial(submit_orm, request, assignment_id=assignment_id, text=text)
    hot = fast.submit_demonstration
    return await run_in_threadpool(hot, request, units, claim, assignment_id, text, slow)


def submit_orm(request: Request, db: Session, user: User, *, assignment_id: int, text: str) -> Response:
    """The demonstration submit through the services (one transaction, app.labeling.fast)."""
    try:
        demo = service.submit_demonstration(db, user, assignment_id, text)
    except AlreadySubmitted as exc:
        return advance(request, db, user, pages.queue_id_of_assignment(db, assignment_id), exc.message)
    except service.TextInvalid as exc:
        page = pages.task_page(db, user, assignment_id, renew=False)
        return render_task(request, page, errors=[exc.message], text=text, status_code=422)
    except Conflict as exc:
        page = pages.task_page(db, user, assignment_id, renew=False)
        return render_task(request, page, errors=[exc.message], text=text, status_code=409)
    queue_id = pages.queue_id_of(db, demo.task_id)
    return advance(request, db, user, queue_id, "Demonstration saved.")
