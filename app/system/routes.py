"""Health check for load balancers and the CLI."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import text

from app.auth import access
from app.deps import DB

router = APIRouter()


@router.get("/healthz", dependencies=[Depends(access.public)])
def healthz(db: DB) -> dict[str, str]:
    """Liveness and database reachability."""
    db.execute(text("SELECT 1"))
    return {"status": "ok"}
