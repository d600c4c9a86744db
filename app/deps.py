"""Request-scoped dependencies: the database session (commit at the edge) and settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.config import Settings, get_settings
from app.db import session_factory
from app.queueing import relay_committed


def _db_session() -> Iterator[Session]:
    """One session per request, committed before the response is sent, rolled back on error."""
    session = session_factory()()
    try:
        yield session
        session.commit()
        relay_committed(session)  # tasks recorded in the outbox go to the broker now
    except BaseException:
        # close() (in finally) rolls the transaction back through the pool without expiring the
        # loaded rows: the error page rendered after this still shows who is signed in, where
        # rollback() would leave an expired, detached user and turn every 4xx page into a 500.
        raise
    finally:
        session.close()


# scope="function": the commit happens before the response leaves, so an acknowledged
# request is durable (FastAPI's default runs exit code after sending).
DB = Annotated[Session, Depends(_db_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def _posted_form(request: Request) -> FormData:
    """The request's form, parsed on the event loop so the route itself can stay a plain function.

    Plain (sync) routes run in the thread pool; an async route doing database work would block
    the event loop (under SQLite, while another request needs the loop to release the write lock).
    """
    return await request.form()


PostedForm = Annotated[FormData, Depends(_posted_form)]
