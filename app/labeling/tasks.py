"""Periodic bookkeeping for leases (schedule `labeling.expire_leases` with celery beat if wanted)."""

from __future__ import annotations

from app.db import session_scope
from app.labeling import service
from app.worker import celery_app


@celery_app.task(name="labeling.expire_leases")
def expire_leases() -> int:
    """Mark every lease past its expiry as expired; returns how many were."""
    with session_scope() as db:
        return service.expire_leases(db)
