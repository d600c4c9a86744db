"""The admin console home, users (invite, roles, deactivate) and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.admin import service
from app.auth.access import AdminUser
from app.deps import DB, PostedForm
from app.enums import Role
from app.navigation import NavItem
from app.prompts.service import queues_with_progress
from app.web import render, shows_secret

router = APIRouter()

NAV = [
    NavItem(
        "Admin",
        "/admin",
        frozenset({Role.admin}),
        "Queues, prompt imports, personal-data review, label quality, users and API tokens.",
    )
]


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/admin", response_class=HTMLResponse)
def home(request: Request, db: DB, _: AdminUser) -> Response:
    """The console home: counts and every queue's progress."""
    return render(
        request, "admin/home.html", {"counts": service.home_counts(db), "rows": queues_with_progress(db)}
    )


@router.get("/admin/users", response_class=HTMLResponse)
def users(request: Request, db: DB, _: AdminUser) -> Response:
    """Users with their roles and state, and the invite form."""
    return render(request, "admin/users.html", {"users": service.list_users(db), "roles": list(Role)})


@router.post("/admin/users", response_class=HTMLResponse)
def invite(request: Request, db: DB, _: AdminUser, form: PostedForm) -> Response:
    """Create a user; a generated temporary password is shown once."""
    user, temp = service.invite_user(
        db,
        str(form.get("username", "")),
        [str(r) for r in form.getlist("role")],
        str(form.get("display_name", "")),
        str(form.get("email", "")),
        str(form.get("password", "")),
    )
    return shows_secret(render(
        request,
        "admin/users.html",
        {"users": service.list_users(db), "roles": list(Role), "created": user, "temp_password": temp},
        status_code=201,
    ))


@router.post("/admin/users/{user_id}/roles")
def roles(request: Request, db: DB, admin: AdminUser, user_id: int, form: PostedForm) -> Response:
    """Replace a user's roles."""
    service.set_roles(db, admin, user_id, [str(r) for r in form.getlist("role")])
    return _see("/admin/users")


@router.post("/admin/users/{user_id}/deactivate")
def deactivate(db: DB, admin: AdminUser, user_id: int) -> Response:
    """Deactivate a user: sessions end, open leases return to the pool, labels stay."""
    service.deactivate(db, admin, user_id)
    return _see("/admin/users")


@router.post("/admin/users/{user_id}/reactivate")
def reactivate(db: DB, _: AdminUser, user_id: int) -> Response:
    """Let a deactivated user sign in again."""
    service.reactivate(db, user_id)
    return _see("/admin/users")


@router.post("/admin/users/{user_id}/password", response_class=HTMLResponse)
def reset_password(request: Request, db: DB, _: AdminUser, user_id: int) -> Response:
    """Set a new temporary password, shown once."""
    user, temp = service.reset_password(db, user_id)
    return shows_secret(render(
        request,
        "admin/users.html",
        {"users": service.list_users(db), "roles": list(Role), "created": user, "temp_password": temp},
    ))


@router.get("/admin/tokens", response_class=HTMLResponse)
def tokens(request: Request, db: DB, _: AdminUser) -> Response:
    """API tokens for the ingestion API."""
    return render(
        request, "admin/tokens.html", {"tokens": service.list_tokens(db), "scopes": service.TOKEN_SCOPES}
    )


@router.post("/admin/tokens", response_class=HTMLResponse)
def create_token(request: Request, db: DB, admin: AdminUser, form: PostedForm) -> Response:
    """Create a token; its secret is shown once and only its hash is kept."""
    token, plain = service.create_token(
        db, admin, str(form.get("name", "")), [str(s) for s in form.getlist("scope")]
    )
    return shows_secret(render(
        request,
        "admin/tokens.html",
        {
            "tokens": service.list_tokens(db),
            "scopes": service.TOKEN_SCOPES,
            "new_token": token,
            "plain": plain,
        },
        status_code=201,
    ))


@router.post("/admin/tokens/{token_id}/revoke")
def revoke_token(db: DB, _: AdminUser, token_id: int) -> Response:
    """Revoke a token."""
    service.revoke_token(db, token_id)
    return _see("/admin/tokens")
