"""create_app(): routers, static files, sessions, security headers and error pages."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
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


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in SECURITY_HEADERS.items() if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
    return render(request, "error.html", {"status": status, "message": message}, status_code=status)


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
        return error_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 422, _validation_message(exc))


def include_routers(app: FastAPI) -> None:
    """Every domain's `routes.router` (app/<domain>/routes.py); each route carries one access rule."""
    for module in domain_modules("routes"):
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web application from Settings."""
    settings = settings or get_settings()
    app = FastAPI(
        title="RLHF loop",
        description="Labeling, training rounds and deployment for the InstructGPT recipe.",
        # The OpenAPI description is served; the Swagger UI is not (it loads scripts from a CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    install_error_handlers(app)
    include_routers(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="rlhf_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(SecurityHeaders)
    return app


def asgi() -> Any:
    """Factory for `uvicorn --factory app.main:asgi`."""
    return create_app()
