"""Sign in and sign out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import access, service
from app.auth.access import MaybeUser
from app.auth.clients import client_address
from app.deps import DB, SettingsDep
from app.errors import AppError
from app.web import render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths, so the login form cannot redirect off-site."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: MaybeUser, next: str | None = None) -> Response:
    """The sign-in form (signed-in users go straight on)."""
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "auth/login.html", {"next": _safe_next(next)})


async def _answer_delay(request: Request) -> AsyncIterator[None]:
    """Wait request.state.answer_delay_s before the response leaves, after the commit, on the
    event loop: a slowed sign-in holds neither a thread nor the database."""
    yield
    delay = getattr(request.state, "answer_delay_s", 0.0)
    if delay > 0:
        await asyncio.sleep(delay)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    _delay: Annotated[None, Depends(_answer_delay, scope="function")],
    db: DB,
    settings: SettingsDep,
    _: MaybeUser,
    username: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Check credentials; on success start a fresh session and go on."""
    attempt = service.authenticate(db, settings, username, password, client_address(request, settings))
    request.state.answer_delay_s = attempt.delay_s
    user = attempt.user
    if user is None:
        return render(
            request,
            "auth/login.html",
            {"error": "Wrong username or password.", "username": username, "next": _safe_next(next)},
            status_code=401,
        )
    access.login_session(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, db: DB, user: access.CurrentUser) -> Response:
    """End the session; a copy of the old cookie no longer signs anyone in (all devices sign out)."""
    service.end_sessions(db, user)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: Annotated[object, Depends(access.signed_in)]) -> Response:
    """The start page: each area the user's roles open, with what waits there."""
    return render(request, "home.html")


@router.get("/account/password", response_class=HTMLResponse)
def password_page(request: Request, user: access.CurrentUser) -> Response:
    """The form to change one's own password (a temporary one from an admin, too)."""
    return render(request, "auth/password.html")


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    db: DB,
    user: access.CurrentUser,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    repeat: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Set a new password; every other session of the user ends, this one continues."""
    try:
        service.change_password(db, user, current, new, repeat)
    except AppError as exc:
        return render(request, "auth/password.html", {"error": exc.message}, status_code=exc.status_code)
    access.login_session(request, user)
    return render(request, "auth/password.html", {"changed": True})
