"""A TestClient acting as a browser form user (it carries the CSRF token); a SQL statement recorder;
taking a task through the labeler's pages, and a lease that has run out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from app.db import get_engine, utcnow
from app.enums import TaskKind
from app.labeling.models import Assignment

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class WebClient(TestClient):
    """TestClient that signs in through the login form and adds the CSRF token to posts."""

    user: Any = None

    def __init__(self, app: Any, **kw: Any) -> None:
        super().__init__(app, base_url="http://testserver", follow_redirects=False, **kw)
        self.csrf: str | None = None

    def refresh_csrf(self, path: str = "/login") -> str:
        """Read the session's CSRF token from a page."""
        page = self.get(path)
        match = _CSRF_META.search(page.text)
        assert match, f"no CSRF meta tag on {path} (status {page.status_code})"
        self.csrf = match.group(1)
        return self.csrf

    def sign_in(self, username: str, password: str) -> None:
        """Log in through the form, as a browser would."""
        token = self.refresh_csrf("/login")
        resp = self.post(
            "/login", data={"username": username, "password": password, "csrf_token": token}, csrf=False
        )
        assert resp.status_code == 303, resp.text[:500]
        self.refresh_csrf("/")

    def request(self, method: str, url: Any, *args: Any, csrf: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        """Send a request; unsafe methods carry the CSRF header unless csrf=False."""
        if csrf and method.upper() not in {"GET", "HEAD", "OPTIONS"} and self.csrf:
            headers = dict(kw.pop("headers", None) or {})
            headers.setdefault("X-CSRF-Token", self.csrf)
            kw["headers"] = headers
        return super().request(method, url, *args, **kw)

    def post(self, url: Any, *, csrf: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        """POST with the CSRF header."""
        return self.request("POST", url, csrf=csrf, **kw)

    def put(self, url: Any, *, csrf: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        """PUT with the CSRF header."""
        return self.request("PUT", url, csrf=csrf, **kw)

    def patch(self, url: Any, *, csrf: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        """PATCH with the CSRF header."""
        return self.request("PATCH", url, csrf=csrf, **kw)

    def delete(self, url: Any, *, csrf: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        """DELETE with the CSRF header."""
        return self.request("DELETE", url, csrf=csrf, **kw)


@contextmanager
def sql_statements() -> Iterator[list[str]]:
    """Every SQL statement the engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):  # the test session's nesting
            seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def take_task(web: Any, queue_id: int | None = None) -> int:
    """Press "next task" (in one queue, or any) as the signed-in labeler; the assignment's id."""
    resp = web.post("/label/next", data={"queue_id": str(queue_id)} if queue_id else {})
    assert resp.status_code == 303, resp.text[:300]
    m = re.match(r"/label/a/(\d+)$", resp.headers["location"])
    assert m, resp.headers["location"]
    return int(m.group(1))


def expired_demonstration_lease(login: Any, factory: Any, db: Any) -> tuple[Any, int, Any]:
    """A labeler who took a demonstration task whose lease has since run out: (client, id, assignment)."""
    factory.task(factory.queue(TaskKind.demonstration))
    web = login("labeler")
    aid = take_task(web)
    a = db.get(Assignment, aid)
    assert a is not None
    a.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    return web, aid, a
