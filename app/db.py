"""Engine, session scope and the declarative Base. Services add and flush; the edge commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.config import Settings, get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations are stable on both databases."""

    metadata = MetaData(naming_convention=NAMING)


READ_ONLY = "rlhf_read_only"


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the models use."""
    return datetime.now(UTC)


def make_engine(settings: Settings) -> Engine:
    """Build an engine: SQLite in WAL mode with a busy timeout, PostgreSQL with pre-ping."""
    url = settings.sqlalchemy_url
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Python's sqlite3 opens transactions lazily; BEGIN IMMEDIATE is issued in
            # `begin` below so writers queue on the busy timeout instead of failing.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit is on disk before it is acknowledged, even across a power loss
            # (NORMAL in WAL mode may lose the last commits).
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock up front: a deferred transaction that later upgrades to a
            # writer gets SQLITE_BUSY without waiting, which is "database is locked".
            # Read-only work (read_scope) reads a WAL snapshot and takes no lock at all.
            deferred = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        connect_args={"prepare_threshold": None} if settings.db_pgbouncer else {},
    )


_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None


def get_engine() -> Engine:
    """The process-wide engine, built lazily from Settings."""
    global _engine, _factory
    if _engine is None:
        _engine = make_engine(get_settings())
        _factory = sessionmaker(bind=_engine, expire_on_commit=False)
    return _engine


def reset_engine() -> None:
    """Dispose the engine (tests, and workers after fork)."""
    global _engine, _factory
    if _engine is not None:
        _engine.dispose()
    _engine = None
    _factory = None


def session_factory() -> sessionmaker[Session]:
    """The sessionmaker bound to the process-wide engine."""
    get_engine()
    assert _factory is not None
    return _factory


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error. Used by CLI commands and tasks."""
    from app.queueing import relay_committed

    session = session_factory()()
    try:
        yield session
        session.commit()
        relay_committed(session)  # tasks recorded in the outbox go to the broker now
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope() -> Iterator[Session]:
    """A read-only unit of work on one consistent snapshot; on SQLite it holds no write lock, so
    a long read (an export) never makes writers wait. Anything written is rolled back."""
    connection = get_engine().connect().execution_options(**{READ_ONLY: True})
    session = Session(bind=connection, expire_on_commit=False)
    try:
        if not get_settings().is_sqlite:
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        yield session
    finally:
        session.close()
        connection.rollback()
        connection.close()
