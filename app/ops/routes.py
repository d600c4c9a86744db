"""The ops console: rounds, a live run page, the model registry and worker status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.access import OpsUser, StaffUser
from app.deps import DB, SettingsDep
from app.enums import Role
from app.navigation import NavItem
from app.ops import service
from app.ops.forms import FormError, RoundForm
from app.policies import service as registry
from app.runs import service as runs
from app.web import render

router = APIRouter()

NAV = [
    NavItem(
        "Ops", "/ops", frozenset({Role.ops}), "Start training rounds, watch them live, deploy and roll back."
    ),
    NavItem(
        "Models", "/ops/versions", frozenset({Role.admin}), "Model versions, lineage and human win-rates."
    ),
]


async def _round_form(request: Request) -> RoundForm:
    """The submitted start-round form (already parsed by the CSRF check, so this is cached)."""
    return RoundForm.from_form(await request.form())


RoundFormDep = Annotated[RoundForm, Depends(_round_form)]


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@router.get("/ops", response_class=HTMLResponse)
def ops_home(request: Request, db: DB, settings: SettingsDep, _: OpsUser, part: str = "") -> Response:
    """Runs, the start-round form, workers and queue lengths (part=runs: the self-refreshing list)."""
    return render(request, "ops/index.html", {"c": service.console(db, settings), "part": part})


@router.post("/ops/rounds", response_class=HTMLResponse)
def start_round(
    request: Request, db: DB, settings: SettingsDep, user: OpsUser, form: RoundFormDep
) -> Response:
    """Start a round and go to its page; a bad form comes back with its message and the input kept."""
    try:
        run = service.start_from_form(db, form, user)
    except FormError as exc:
        context = {"c": service.console(db, settings, form), "error": exc.message, "part": ""}
        return render(request, "ops/index.html", context, status_code=exc.status_code)
    return _back(f"/ops/runs/{run.id}")


@router.get("/ops/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, db: DB, _: OpsUser, run_id: int, part: str = "") -> Response:
    """One round; part=live renders only the fragment that polls itself while the round is live."""
    return render(request, "ops/run.html", {"p": service.run_page(db, run_id), "part": part})


@router.post("/ops/runs/{run_id}/cancel")
def cancel_run(db: DB, _: OpsUser, run_id: int) -> Response:
    """Cancel a round (a running one stops at its next step)."""
    runs.cancel_run(db, run_id)
    return _back(f"/ops/runs/{run_id}")


@router.post("/ops/runs/{run_id}/resume")
def resume_run(db: DB, _: OpsUser, run_id: int) -> Response:
    """Requeue a failed or cancelled round from its last completed stage."""
    runs.resume_run(db, run_id)
    return _back(f"/ops/runs/{run_id}")


@router.post("/ops/runs/{run_id}/approve")
def approve_run(db: DB, user: OpsUser, run_id: int) -> Response:
    """Deploy the policy of a round waiting at its deploy gate."""
    runs.approve_run(db, run_id, user)
    return _back(f"/ops/runs/{run_id}")


@router.get("/ops/versions", response_class=HTMLResponse)
def versions(request: Request, db: DB, _: StaffUser) -> Response:
    """Every model version with lineage, metrics and win-rate against its parent (admins read only)."""
    return render(request, "ops/versions.html", {"v": service.versions_page(db)})


@router.post("/ops/versions/{version_id}/deploy")
def deploy_version(db: DB, user: OpsUser, version_id: int) -> Response:
    """Deploy a policy version (one transaction)."""
    registry.deploy(db, version_id, by=user)
    return _back("/ops/versions")


@router.post("/ops/rollback")
def rollback(db: DB, user: OpsUser, current: Annotated[int | None, Form()] = None) -> Response:
    """Redeploy the policy the current one replaced (one transaction); `current` is the policy
    the page showed, so a double click rolls back once."""
    registry.rollback(db, by=user, expected_current_id=current)
    return _back("/ops/versions")
