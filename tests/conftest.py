"""Shared fixtures: a real database per test session, a rolled-back transaction per test,
clients logged in as each role, a live server and Chromium.

Backend: PostgreSQL (127.0.0.1:5432, database created and dropped here) by default;
`TEST_DB=sqlite` runs the same suite against the SQLite default.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Settings are read once per process: set the environment before any app import reads it.
_TMP = Path(tempfile.mkdtemp(prefix="rlhf-test-"))
TEST_DB = os.environ.get("TEST_DB", "postgresql")
PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_DB_NAME = f"rlhf_test_{uuid.uuid4().hex[:8]}"

os.environ.update(
    RLHF_ENV="test",
    DATA_DIR=str(_TMP / "data"),
    SECRET_KEY="test-secret-" + "x" * 32,
    REDIS_URL="",
)
if TEST_DB == "sqlite":
    os.environ["DATABASE_URL"] = f"sqlite:///{_TMP / 'test.sqlite3'}"
else:
    from sqlalchemy.engine import make_url

    os.environ["DATABASE_URL"] = make_url(PG_ADMIN_URL).set(database=_DB_NAME).render_as_string(False)

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db import reset_engine, session_factory  # noqa: E402
from tests.factories import Factory  # noqa: E402
from tests.helpers import WebClient  # noqa: E402

pytest_plugins = ["tests.live"]


def _create_pg_database() -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{_DB_NAME}"'))
    admin.dispose()


def _drop_pg_database() -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :d AND pid <> pg_backend_pid()"
            ),
            {"d": _DB_NAME},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_DB_NAME}"'))
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str]:
    """The session's database, migrated to head with Alembic (so migrations are exercised)."""
    from alembic import command

    from app.cli import alembic_config

    get_settings.cache_clear()
    reset_engine()
    if TEST_DB != "sqlite":
        _create_pg_database()
    command.upgrade(alembic_config(), "head")
    yield get_settings().sqlalchemy_url
    reset_engine()
    if TEST_DB != "sqlite":
        _drop_pg_database()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture()
def db() -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test.

    Code under test may commit: commits release a savepoint of the outer transaction.
    """
    from app.db import get_engine

    connection = get_engine().connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture()
def factory(db: Session) -> Factory:
    """Builders for the domain objects, writing into the test's session."""
    return Factory(db)


@pytest.fixture()
def app(db: Session):  # type: ignore[no-untyped-def]
    """The FastAPI app with its database dependency bound to the test's session."""
    from app.deps import _db_session
    from app.labeling import fast
    from app.main import create_app

    application = create_app()

    def _test_session() -> Iterator[Session]:
        from app.queueing import relay_committed

        try:
            yield db
            db.commit()
            relay_committed(db)
        except BaseException:
            db.rollback()
            raise

    application.dependency_overrides[_db_session] = _test_session
    application.dependency_overrides[fast.units] = lambda: _test_units(db)
    return application


def _test_units(db: Session):  # type: ignore[no-untyped-def]
    """The one-hop routes' unit of work on the test's session (savepoint commits, as above)."""
    from contextlib import contextmanager

    from app.labeling.fast import Unit
    from app.queueing import relay_committed

    @contextmanager
    def unit(*, write: bool):  # type: ignore[no-untyped-def]
        try:
            yield Unit(db.connection(), db)
            db.commit()
            relay_committed(db)
        except BaseException:
            db.rollback()
            raise
        finally:
            db.expire_all()  # the hot path writes with Core, past the session's identity map

    return unit


@pytest.fixture()
def client(app) -> WebClient:  # type: ignore[no-untyped-def]
    """An anonymous browser-like client."""
    return WebClient(app)


@pytest.fixture()
def login(app, factory: Factory):  # type: ignore[no-untyped-def]
    """login("labeler") or login("admin", "ops") -> a client signed in as a new user with those roles."""

    def _login(*roles: str, username: str | None = None) -> WebClient:
        user = factory.user(*roles, username=username)
        web = WebClient(app)
        web.sign_in(user.username, factory.password)
        web.user = user
        return web

    return _login


@pytest.fixture()
def committed_db() -> Iterator[Session]:
    """A plain session whose commits are real (live servers, workers, concurrency).

    On SQLite every transaction, a read's included, holds the write lock until it ends (BEGIN
    IMMEDIATE, app.db): end a read with commit() or rollback() before the code under test (a live
    server, a CLI command, a worker) needs to write, or it waits out the busy timeout (a 503, or
    "database is locked"). Every table is emptied afterwards.
    """
    session = session_factory()()
    try:
        yield session
    finally:
        session.close()
        truncate_all()


def truncate_all() -> None:
    """Empty every table (for tests that commit for real)."""
    from app.db import Base, get_engine

    engine = get_engine()
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            )
        else:
            for t in tables:
                conn.execute(text(f'DELETE FROM "{t}"'))  # noqa: S608 - table names from our metadata
