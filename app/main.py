"""create_app(): routers, static files, sessions, security headers and error pages."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings, get_settings
from app.discovery import domain_modules
from app.errors import AppError
from app.web import STATIC_DIR, render

log = logging.getLogger("app")

SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"same-origin",
    b"content-security-policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
}


HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every response (HSTS too over HTTPS)."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        self.headers = {**SECURITY_HEADERS, **(dict([HSTS]) if https else {})}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in self.headers.items() if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StaticCache:
    """Cache headers for /static: fingerprinted URLs (?v=hash) are immutable for a year."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fingerprinted = scope["type"] == "http" and b"v=" in scope.get("query_string", b"")
        value = b"public, max-age=31536000, immutable" if fingerprinted else b"no-cache"

        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status", 200) < 400:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message["headers"] = [*headers, (b"cache-control", value)]
            await send(message)

        await self.app(scope, receive, send_cached)


class UploadLimit:
    """Refuse a body whose declared length is past the upload limit, with a clear 413, unread.

    Bodies without a length (chunked) are cut off by FastAPI's `max_body_size` backstop.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers", [])).get(b"content-length", b"0")
            # A file of exactly the limit still fits: the form around it gets 1 MiB of slack.
            if length.isdigit() and int(length) > self.limit + 1024 * 1024:
                mib = max(1, self.limit // (1024 * 1024))
                response = _bare_error(Request(scope), 413, f"The request is larger than the {mib} MiB "
                                       "upload limit; nothing was stored.")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Routes that take large bodies: the import upload (signed-in session) and the ingestion API
# (bearer token); every other body, /login's included, stays under max_form_bytes.
LARGE_BODY_ROUTES = re.compile(r"^/admin/queues/\d+/imports$")
LARGE_BODY_API = "/api/prompts"


class BodyLimit:
    """Refuse bodies past `small` bytes before anything parses them, unless the route takes uploads
    and the request carries a session with a user (or a bearer token, on the API).

    Runs inside SessionMiddleware (it reads the signed session) and before routing, so an anonymous
    post is never spooled to disk. Declared lengths are refused unread; a body without one is read
    up to the limit, then passed on.
    """

    def __init__(self, app: ASGIApp, small: int) -> None:
        self.app = app
        self.small = small

    def _large_ok(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if LARGE_BODY_ROUTES.match(path):
            return "uid" in scope.get("session", {})
        if path == LARGE_BODY_API:
            return dict(scope.get("headers", [])).get(b"authorization", b"").lower().startswith(b"bearer ")
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        bodyless = scope.get("method") in ("GET", "HEAD", "OPTIONS")
        if scope["type"] != "http" or bodyless or self._large_ok(scope):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.small:
            await self._refuse(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit here (at most `small` bytes in
        # memory), then hand the app the body as one message.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.small:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        kib = max(1, self.small // 1024)
        message = f"The request body is larger than {kib} KiB; only the import form takes large files."
        await _bare_error(Request(scope), 413, message)(scope, receive, send)


UNAVAILABLE = (
    "The database is not reachable right now, so nothing was saved. "
    "Your work on this page is still here: try again in a moment."
)


def wants_json(request: Request) -> bool:
    """API clients get JSON errors; browsers get pages."""
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def error_response(request: Request, status: int, message: str) -> Response:
    """One place that shapes every error: JSON for APIs, a page (or fragment) for browsers."""
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    if status == 401 and request.method == "GET" and request.headers.get("hx-request") != "true":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    _forget_expired_user(request)
    return render(request, "error.html", {"status": status, "message": message}, status_code=status)


def _forget_expired_user(request: Request) -> None:
    """Drop a signed-in user whose row a failed commit expired (it cannot be reloaded any more)."""
    from sqlalchemy import inspect

    from app.auth.models import User

    user = getattr(request.state, "user", None)
    if isinstance(user, User):  # the one-hop routes' SignedInUser is a plain record
        state = inspect(user)
        if state.expired_attributes or "role_rows" in state.unloaded:
            request.state.user = None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in {"body", "query", "path", "form"})
        parts.append(f"{loc or 'input'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "Invalid input."


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, HTTP errors and validation errors to clear responses."""

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return error_response(request, exc.status_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "There is no page at this address."
        elif exc.status_code == 413:
            limit = request.app.state.settings.max_upload_bytes // (1024 * 1024)
            message = f"The request is larger than the {limit} MiB upload limit; nothing was stored."
        return error_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 422, _validation_message(exc))

    @app.exception_handler(DBAPIError)
    async def _database_down(request: Request, exc: DBAPIError) -> Response:
        # Lost connections and lock timeouts are retryable: the transaction was rolled back.
        if not (exc.connection_invalidated or _is_operational(exc)):
            raise exc
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__)
        _drop_flash(request)
        response = error_response(request, 503, UNAVAILABLE)
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log; the user gets a page (with the security headers).
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        _drop_flash(request)
        return _bare_error(request, 500, "Something went wrong on our side. Try again; if it keeps "
                           "happening, tell an admin the time it happened.")


def _drop_flash(request: Request) -> None:
    """Forget a flash message the failed request set ("Ranking saved." before a commit that then
    failed): the next page must not claim what was rolled back."""
    if "session" in request.scope:
        request.session.pop("flash", None)


def _is_operational(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)


def _bare_error(request: Request, status: int, message: str) -> Response:
    """An error response that needs neither the session nor the database (outermost handler)."""
    if wants_json(request):
        response: Response = JSONResponse({"detail": message}, status_code=status)
    else:
        from fastapi.responses import HTMLResponse
        from markupsafe import escape

        response = HTMLResponse(
            f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error {status}</title>"
            f"</head><body><main><h1>Error {status}</h1><p>{escape(message)}</p>"
            f"<p><a href=\"/\">Start page</a></p></main></body></html>",
            status_code=status,
        )
    response.headers.update({k.decode(): v.decode() for k, v in SECURITY_HEADERS.items()})
    return response


def include_routers(app: FastAPI) -> None:
    """Every domain's `routes.router` (app/<domain>/routes.py); each route carries one access rule."""
    for module in domain_modules("routes"):
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)


def _describe_bearer_tokens(app: FastAPI) -> None:
    """Name the bearer-token scheme the JSON API routes declare in the OpenAPI description."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "An API token created under Admin > API tokens, with the route's scope.",
            }
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def _lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        yield

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web application from Settings."""
    settings = settings or get_settings()
    app = FastAPI(
        lifespan=_lifespan(settings),
        title="RLHF loop",
        description="Labeling, training rounds and deployment for the InstructGPT recipe.",
        # The OpenAPI description is served; the Swagger UI is not (it loads scripts from a CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        # Bodies past the upload limit are refused with 413 before they are read in full.
        max_body_size=2 * settings.max_upload_bytes + 2 * 1024 * 1024,
    )
    app.state.settings = settings
    _describe_bearer_tokens(app)
    install_error_handlers(app)
    include_routers(app)
    app.mount("/static", StaticCache(StaticFiles(directory=str(STATIC_DIR))), name="static")
    app.add_middleware(BodyLimit, small=settings.max_form_bytes)  # inside the session middleware
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="rlhf_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    # Text responses are compressed (a ranking page is ~25 KB of HTML before gzip).
    app.add_middleware(UploadLimit, limit=settings.max_upload_bytes)
    app.add_middleware(GZipMiddleware, minimum_size=500, compresslevel=6)
    app.add_middleware(SecurityHeaders, https=settings.https)
    return app


def asgi() -> Any:
    """Factory for `uvicorn --factory app.main:asgi`."""
    return create_app()
