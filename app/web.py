"""Jinja2 templates with autoescaping, the CSRF token, fingerprinted static URLs and markdown."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup

from app.auth.access import CSRF_FIELD, csrf_token
from app.enums import FLAGS
from app.navigation import nav_items

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

# html=False: raw HTML in guidelines is shown as text, never rendered (user text stays inert).
_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
# Model completions: the same, and no images (an image URL would make the labeler's browser fetch it).
_completion_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").disable("image")


def epoch_ms(at: datetime | None) -> str:
    """Milliseconds since the epoch for a stored time (naive = UTC), "" for none: for scripts."""
    if at is None:
        return ""
    return str(int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000))


def render_markdown(text: str | None) -> Markup:
    """Safe markdown: raw HTML is escaped by the parser, links keep their text."""
    return Markup(_rendered(text or ""))  # noqa: S704 - markdown-it escapes raw HTML with html=False


def render_completion(text: str | None) -> Markup:
    """A completion's Markdown and code as HTML: raw HTML escaped, images left as text."""
    return Markup(_completion_md.render(text or ""))  # noqa: S704 - html=False escapes raw HTML


@lru_cache(maxsize=256)
def _rendered(text: str) -> str:
    # Guidelines are rendered on every task page view and change rarely: keep the HTML.
    return _md.render(text)


@lru_cache(maxsize=256)
def _fingerprint(path: str) -> str:
    file = STATIC_DIR / path
    try:
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    except OSError:
        return f"/static/{path}"
    return f"/static/{path}?v={digest}"


def static_url(path: str) -> str:
    """A cache-busting URL for a static asset (the content hash as a query)."""
    return _fingerprint(path.lstrip("/"))


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals.update(static_url=static_url, FLAGS=FLAGS, CSRF_FIELD=CSRF_FIELD, nav_items=nav_items)
templates.env.filters["markdown"] = render_markdown
templates.env.filters["epoch_ms"] = epoch_ms
templates.env.filters["completion_md"] = render_completion


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a template with the request, the user and the CSRF token in its context."""
    ctx: dict[str, Any] = {
        "request": request,
        "user": getattr(request.state, "user", None),
        "csrf_token": csrf_token(request),
        "is_htmx": request.headers.get("hx-request") == "true",
    }
    if context:
        ctx.update(context)
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def shows_secret(response: HTMLResponse) -> HTMLResponse:
    """Mark a page that shows a secret once (a password, a token) as never to be stored or cached."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
