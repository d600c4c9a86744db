"""Walk every route of the app as FastAPI serves it (prefixes and router dependencies applied)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Each API route with `.path`, `.methods`, `.dependant` and `.param_convertors`.

    Newer FastAPI keeps included routers as wrappers whose effective routes carry the
    router's prefix and dependencies; older versions flatten them into APIRoutes.
    """
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()


def other_routes(app: FastAPI) -> Iterator[Any]:
    """Routes that are not API routes (mounts, framework routes)."""
    for route in app.routes:
        if not isinstance(route, APIRoute) and not hasattr(route, "effective_route_contexts"):
            yield route
