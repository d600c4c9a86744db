"""Quality control pages: agreement, gold accuracy, throughput, pausing, and the label review."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.access import AdminUser
from app.deps import DB, SettingsDep
from app.quality import review, service
from app.web import render

router = APIRouter()


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/admin/quality", response_class=HTMLResponse)
def quality(request: Request, db: DB, settings: SettingsDep, _: AdminUser) -> Response:
    """Per-queue and per-labeler agreement, tau, gold accuracy and throughput."""
    return render(request, "admin/quality.html", service.quality_overview(db, settings))


@router.post("/admin/quality/pause-below-gold")
def pause_below_gold(db: DB, settings: SettingsDep, _: AdminUser) -> Response:
    """Pause every labeler under the gold-accuracy threshold."""
    service.pause_below_gold(db, settings)
    return _see("/admin/quality")


@router.post("/admin/labelers/{user_id}/pause")
def pause(db: DB, _: AdminUser, user_id: int) -> Response:
    """Pause one labeler: they keep their login but get no tasks."""
    service.set_paused(db, user_id, True)
    return _see("/admin/quality")


@router.post("/admin/labelers/{user_id}/resume")
def resume(db: DB, _: AdminUser, user_id: int) -> Response:
    """Let a paused labeler take tasks again."""
    service.set_paused(db, user_id, False)
    return _see("/admin/quality")


@router.get("/admin/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    db: DB,
    _: AdminUser,
    queue: int | None = None,
    labeler: int | None = None,
    kind: str | None = None,
) -> Response:
    """Submitted labels, newest first, filtered by queue, labeler and kind."""
    return render(request, "admin/review.html", review.review_list(db, queue, labeler, kind))


@router.get("/admin/review/rankings/{ranking_id}", response_class=HTMLResponse)
def review_ranking(request: Request, db: DB, _: AdminUser, ranking_id: int) -> Response:
    """One ranking as the labeler submitted it."""
    return render(request, "admin/review_ranking.html", review.ranking_detail(db, ranking_id))


@router.get("/admin/review/demonstrations/{demonstration_id}", response_class=HTMLResponse)
def review_demonstration(request: Request, db: DB, _: AdminUser, demonstration_id: int) -> Response:
    """One demonstration as the labeler submitted it."""
    return render(request, "admin/review_demo.html", review.demonstration_detail(db, demonstration_id))


@router.post("/admin/review/rankings/{ranking_id}/gold")
def gold_from_ranking(db: DB, _: AdminUser, ranking_id: int) -> Response:
    """Make this ranking's item a gold item with this ranking as its answer."""
    service.mark_gold_from_ranking(db, ranking_id)
    return _see(f"/admin/review/rankings/{ranking_id}")


@router.post("/admin/review/demonstrations/{demonstration_id}/gold")
def gold_from_demonstration(db: DB, _: AdminUser, demonstration_id: int) -> Response:
    """Make this demonstration's item a gold item with this text as its reference."""
    service.mark_gold_from_demonstration(db, demonstration_id)
    return _see(f"/admin/review/demonstrations/{demonstration_id}")


@router.post("/admin/tasks/{task_id}/ungold")
def ungold(db: DB, _: AdminUser, task_id: int) -> Response:
    """Turn a gold item back into an ordinary one."""
    service.unmark_gold(db, task_id)
    return _see("/admin/quality")
