"""docker-compose.yml is valid and has the production shape (checked without a Docker engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "SECRET_KEY": "k" * 40, "POSTGRES_PASSWORD": "pw"}


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor the docker compose plugin is installed (make test installs it)")


def _config(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_compose_file_is_valid() -> None:
    out = _config("-q")
    assert out.returncode == 0, out.stderr


def test_compose_requires_secrets() -> None:
    env = {k: v for k, v in ENV.items() if k not in {"SECRET_KEY", "POSTGRES_PASSWORD"}}
    out = _config("-q", env=env)
    assert out.returncode != 0 and "set " in out.stderr


def test_compose_has_the_production_shape() -> None:
    out = _config()
    assert out.returncode == 0, out.stderr
    spec = yaml.safe_load(out.stdout)
    services = spec["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "scheduler"} <= set(services)
    assert "--beat" in services["scheduler"]["command"] and "--beat" not in services["worker"]["command"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["rlhf", "db", "upgrade"]
    assert {"pgdata", "appdata"} <= set(spec["volumes"])
    # App processes reach PostgreSQL through PgBouncer in transaction mode; the migration directly.
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    for name in ("web", "worker", "scheduler"):
        assert "@pgbouncer:" in services[name]["environment"]["DATABASE_URL"]
        assert services[name]["environment"]["DB_PGBOUNCER"] == "true"
        assert services[name]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    assert "@postgres:" in services["migrate"]["environment"]["DATABASE_URL"]
    for name in ("web", "worker", "migrate", "scheduler"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and env["REDIS_URL"].startswith("redis://")
        targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services[name]["volumes"]]
        assert "/data" in targets, f"{name} does not mount the data volume"
