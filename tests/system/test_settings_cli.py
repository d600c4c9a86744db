"""Settings validation and the CLI's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import DEFAULT_SECRET, ConfigError, Settings, load_settings


def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, database_url="", rlhf_env="test")
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'rlhf.sqlite3'}"


def test_postgres_url_uses_psycopg3() -> None:
    s = Settings(database_url="postgresql://u:p@db:5432/rlhf", rlhf_env="test")
    assert s.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/rlhf"


def test_production_refuses_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLHF_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", DEFAULT_SECRET)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    assert load_settings().secret_key == "s" * 40


@pytest.mark.parametrize("url", ["not a url at all", "mysql://x/y", "://"])
def test_malformed_database_url_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings()


def _rlhf(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_cli_bad_database_url_prints_one_line_not_a_traceback() -> None:
    out = _rlhf("users", "list", DATABASE_URL="mysql://nope/x")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: DATABASE_URL must be sqlite:// or postgresql://, not 'mysql'"
    ]


def test_cli_unreachable_database_is_one_line() -> None:
    out = _rlhf("users", "list", DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "database unavailable" in out.stderr


def test_cli_upgrade_seed_and_create_user_on_sqlite(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "DATA_DIR": str(tmp_path)}
    assert _rlhf("db", "upgrade", **env).returncode == 0
    seeded = _rlhf("demo", "seed", **env)
    assert seeded.returncode == 0 and "alice" in seeded.stdout and "admin" in seeded.stdout
    again = _rlhf("demo", "seed", **env)  # idempotent
    assert again.returncode == 0
    made = _rlhf(
        "users",
        "create",
        "carol",
        "--role",
        "labeler",
        "--role",
        "ops",
        "--password",
        "long-enough-pw",
        **env,
    )
    assert made.returncode == 0 and "carol (labeler, ops)" in made.stdout
    dup = _rlhf("users", "create", "carol", "--role", "labeler", "--password", "long-enough-pw", **env)
    assert dup.returncode == 1 and dup.stderr.strip() == "error: User 'carol' already exists."
    listed = _rlhf("users", "list", **env)
    assert "carol\tlabeler,ops\tactive" in listed.stdout
