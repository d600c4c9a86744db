"""Tasks that prove the queue works end to end."""

from __future__ import annotations

import os
import socket

from app.worker import celery_app


@celery_app.task(name="system.ping")
def ping(payload: str) -> dict[str, str | int]:
    """Echo a payload with the worker's host and pid (a round trip through broker and backend)."""
    return {"payload": payload, "host": socket.gethostname(), "pid": os.getpid()}
