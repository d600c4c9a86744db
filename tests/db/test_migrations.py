"""Migrations: upgrade head -> downgrade base -> upgrade head on PostgreSQL and SQLite, no drift."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from app.cli import alembic_config
from app.db import Base
from tests.conftest import PG_ADMIN_URL


@pytest.fixture(params=["postgresql", "sqlite"])
def scratch_engine(request, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """An empty database of each backend."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'mig.sqlite3'}")
        yield engine
        engine.dispose()
        return
    name = f"rlhf_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name, drivername="postgresql+psycopg")
    engine = create_engine(url)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}"'))
    admin.dispose()


def _run(engine: Engine, fn, revision: str) -> None:  # type: ignore[no-untyped-def]
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, revision)


def test_upgrade_downgrade_upgrade_and_no_drift(scratch_engine: Engine) -> None:
    _run(scratch_engine, command.upgrade, "head")
    tables = set(inspect(scratch_engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    _run(scratch_engine, command.downgrade, "base")
    assert set(inspect(scratch_engine).get_table_names()) <= {"alembic_version"}
    _run(scratch_engine, command.upgrade, "head")
    with scratch_engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True, "render_as_batch": True}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations drifted: {diff}"


def test_one_deployed_policy_is_enforced_by_the_database(scratch_engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    _run(scratch_engine, command.upgrade, "head")
    insert = text(
        "INSERT INTO model_versions (name, kind, path, manifest, metrics, is_deployed, created_at) "
        "VALUES (:n, :k, '/x', '{}', '{}', :d, CURRENT_TIMESTAMP)"
    )
    with scratch_engine.begin() as conn:
        conn.execute(insert, {"n": "a", "k": "policy", "d": True})
        conn.execute(insert, {"n": "b", "k": "policy", "d": False})
    with pytest.raises(IntegrityError), scratch_engine.begin() as conn:
        conn.execute(insert, {"n": "c", "k": "policy", "d": True})
    with pytest.raises(IntegrityError), scratch_engine.begin() as conn:
        conn.execute(insert, {"n": "d", "k": "reward", "d": True})
    assert os.environ["DATABASE_URL"]  # the session database is untouched by these scratch ones
