"""Request-scoped dependencies: the database session (commit at the edge) and settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import session_scope


def _db_session() -> Iterator[Session]:
    """One session per request, committed before the response is sent, rolled back on error."""
    with session_scope() as session:
        yield session


# scope="function": the commit happens before the response leaves, so an acknowledged
# request is durable (FastAPI's default runs exit code after sending).
DB = Annotated[Session, Depends(_db_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
