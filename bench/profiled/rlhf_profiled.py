"""The app wrapped for `bench.web_load --profile`: counts statements and round trips per request.

Kept outside the app (it wraps whatever `app.main:asgi` is on the path, so the same counter runs
against another checkout's server for a before/after comparison). Every `RLHF_PROFILE_DIR`
interval each worker writes `<pid>.json`: per route ("POST /label/a/{id}/ranking"), the number
of requests, SQL statements, transaction round trips (BEGIN on PostgreSQL is implicit in the
first statement; COMMIT/ROLLBACK are counted) and connection checkouts (each one a pre-ping
round trip when the pool pings), and the summed wall time.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import threading
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

FIELDS = ("requests", "statements", "commits", "rollbacks", "checkouts", "wall_ms")
_current: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("rlhf_profile", default=None)
_stats: dict[str, list[float]] = {}
_lock = threading.Lock()
_IDS = re.compile(r"/\d+")


def _bump(i: int) -> None:
    box = _current.get()
    if box is not None:
        box[i] += 1


@event.listens_for(Engine, "before_cursor_execute")
def _statement(*_args: Any) -> None:
    _bump(1)


@event.listens_for(Engine, "commit")
def _commit(*_args: Any) -> None:
    _bump(2)


@event.listens_for(Engine, "rollback")
def _rollback(*_args: Any) -> None:
    _bump(3)


@event.listens_for(Pool, "checkout")
def _checkout(*_args: Any) -> None:
    _bump(4)


def _dump(folder: str) -> None:
    path = os.path.join(folder, f"{os.getpid()}.json")
    while True:
        time.sleep(0.25)
        with _lock:
            data = json.dumps(_stats)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(data)
        os.replace(tmp, path)


class Profile:
    """Pure ASGI middleware: one counter box per request, visible to the threads it hops to."""

    def __init__(self, app: Any) -> None:
        self.app = app
        folder = os.environ["RLHF_PROFILE_DIR"]
        threading.Thread(target=_dump, args=(folder,), daemon=True).start()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        box = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        token = _current.set(box)
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
            box[5] = (time.perf_counter() - t0) * 1000
            key = f"{scope['method']} {_IDS.sub('/{id}', scope['path'])}"
            with _lock:
                row = _stats.setdefault(key, [0.0] * len(FIELDS))
                for i, v in enumerate(box):
                    row[i] += v


def asgi() -> Any:
    """Factory for uvicorn: the project's app inside the profiler."""
    from app.main import asgi as inner

    return Profile(inner())
