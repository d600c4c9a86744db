"""The `rlhf` command line: database, users, demo data and the development server."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from alembic.config import Config

from app.config import ConfigError, get_settings
from app.enums import Role
from app.errors import AppError

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Run the RLHF loop.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
users_cli = typer.Typer(no_args_is_help=True, help="User accounts.")
demo_cli = typer.Typer(no_args_is_help=True, help="Demo data.")
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(demo_cli, name="demo")
rounds_cli = typer.Typer(no_args_is_help=True, help="Training rounds.")
versions_cli = typer.Typer(no_args_is_help=True, help="Model versions and deployment.")
cli.add_typer(rounds_cli, name="rounds")
cli.add_typer(versions_cli, name="versions")

ROOT = Path(__file__).resolve().parent.parent


def alembic_config() -> Config:
    """Alembic's Config pointing at this checkout's migrations."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["configure_logger"] = False
    return cfg


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from alembic import command

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(), revision)
    typer.echo(f"database at {revision}: {_redacted(settings.sqlalchemy_url)}")


@db_cli.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' drops everything)."""
    from alembic import command

    command.downgrade(alembic_config(), revision)
    typer.echo(f"database at {revision}")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@users_cli.command("create")
def users_create(
    username: str,
    role: Annotated[list[Role], typer.Option("--role", "-r", help="labeler, admin or ops; repeatable")],
    password: Annotated[
        str | None, typer.Option(help="default: read RLHF_PASSWORD, else generate and print one")
    ] = None,
    display_name: str = "",
) -> None:
    """Create a user with one or more roles."""
    from app.auth.service import create_user
    from app.db import session_scope

    generated = False
    if password is None:
        password = os.environ.get("RLHF_PASSWORD") or None
    if password is None:
        password, generated = secrets.token_urlsafe(12), True
    with session_scope() as db:
        user = create_user(db, username, password, role, display_name)
        roles = ", ".join(sorted(r.value for r in user.roles))
    typer.echo(f"created {username} ({roles})" + (f" with password {password}" if generated else ""))


@users_cli.command("list")
def users_list() -> None:
    """List users and their roles."""
    from sqlalchemy import select

    from app.auth.models import User
    from app.db import session_scope

    with session_scope() as db:
        for user in db.scalars(select(User).order_by(User.username)):
            state = "active" if user.is_active else "deactivated"
            typer.echo(f"{user.username}\t{','.join(sorted(r.value for r in user.roles))}\t{state}")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Create demo users and queues (idempotent) and print the logins."""
    from app.db import session_scope
    from app.demo import seed_demo

    with session_scope() as db:
        logins = seed_demo(db)
    typer.echo("demo users (username / password):")
    for username, password, roles in logins:
        typer.echo(f"  {username:<10} {password:<14} {roles}")


@rounds_cli.command("start")
def rounds_start(
    queue: Annotated[list[int] | None, typer.Option("--queue", help="queue id; repeatable")] = None,
    stages: Annotated[str, typer.Option(help="a contiguous part of sft,reward,ppo")] = "sft,reward,ppo",
    preset: Annotated[str, typer.Option(help="quick or paper")] = "quick",
    auto_deploy: Annotated[bool, typer.Option("--auto-deploy", help="deploy when the gate passes")] = False,
    parent: Annotated[int | None, typer.Option(help="parent policy id; default: the deployed one")] = None,
) -> None:
    """Export the labels, record a round and queue it for a training worker."""
    from pydantic import ValidationError

    from app.db import session_scope
    from app.runs.schemas import DeployGate, RoundRequest
    from app.runs.service import start_round

    try:
        req = RoundRequest(
            queue_ids=queue or [],
            stages=[s.strip() for s in stages.split(",") if s.strip()],
            preset=preset,
            parent_policy_id=parent,
            gate=DeployGate(auto_deploy=auto_deploy),
        )
    except ValidationError as exc:
        message = str(exc.errors()[0].get("msg", "invalid round"))
        raise AppError(message.removeprefix("Value error, ")) from None
    with session_scope() as db:
        run = start_round(db, req, by=None)
        run_id, names = run.id, [s.name for s in run.stages]
    url = get_settings().base_url.rstrip("/")
    typer.echo(f"round {run_id} queued ({' -> '.join(names)}); watch it at {url}/ops/runs/{run_id}")


@rounds_cli.command("list")
def rounds_list(limit: int = 20) -> None:
    """Recent rounds, newest first."""
    from app.db import session_scope
    from app.runs.service import list_runs, reap_stale_runs

    with session_scope() as db:
        reap_stale_runs(db)
        for run in list_runs(db, limit=limit):
            stages = ",".join(s.name for s in run.stages)
            created = run.created_at.strftime("%Y-%m-%d %H:%M")
            parent = run.parent_policy_id or "-"
            typer.echo(f"{run.id}\t{run.status}\t{run.progress:.0%}\t{stages}\t{created}\tparent={parent}")


@versions_cli.command("list")
def versions_list() -> None:
    """Every model version, newest first; '*' marks the deployed policy."""
    from app.db import session_scope
    from app.policies.service import list_versions

    with session_scope() as db:
        for v in list_versions(db):
            mark = "*" if v.is_deployed else " "
            lineage = f"parent={v.parent_id or '-'}\trun={v.run_id or '-'}"
            typer.echo(f"{mark} {v.id}\t{v.name}\t{v.kind}\t{lineage}")


@versions_cli.command("deploy")
def versions_deploy(version_id: int) -> None:
    """Deploy a policy version (one transaction)."""
    from app.db import session_scope
    from app.policies.service import deploy

    with session_scope() as db:
        record = deploy(db, version_id, by=None)
        typer.echo(f"deployed version {record.version_id} (was {record.previous_version_id or 'none'})")


@versions_cli.command("rollback")
def versions_rollback() -> None:
    """Redeploy the policy the current one replaced."""
    from app.db import session_scope
    from app.policies.service import rollback

    with session_scope() as db:
        record = rollback(db, by=None)
        typer.echo(f"rolled back to version {record.version_id} (from {record.previous_version_id})")


def _worker_cmd(queues: str, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app.worker:celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--loglevel",
        "INFO",
        "-n",
        "dev@%h",
    ]


@cli.command("worker")
def worker(
    queues: str = "default,sampling,training",
    concurrency: int = 1,
    beat: Annotated[bool, typer.Option(help="also run the periodic scheduler (one per deployment)")] = False,
) -> None:
    """Run a Celery worker on QUEUES (production: one per GPU host)."""
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    os.execvp(sys.executable, _worker_cmd(queues, concurrency, beat))  # noqa: S606


@cli.command("serve")
def serve(host: str = "0.0.0.0", port: int = 8000, workers: int = 2) -> None:  # noqa: S104
    """Serve the web app with uvicorn (production: behind a TLS proxy)."""
    import uvicorn

    get_settings()  # fail fast, in one line, on bad settings
    uvicorn.run("app.main:asgi", factory=True, host=host, port=port, workers=workers, proxy_headers=True)


@cli.command("dev")
def dev(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Web app and one worker process together on the embedded default."""
    import uvicorn

    get_settings()
    # Two processes so a training round does not stall sampling; beat reaps dead rounds, restocks queues.
    proc = subprocess.Popen(_worker_cmd("default,sampling,training", 2, beat=True, name="dev@%h"))  # noqa: S603
    typer.echo(f"worker started (pid {proc.pid}); web app at http://{host}:{port}/  (Ctrl-C stops both)")
    try:
        uvicorn.run("app.main:asgi", factory=True, host=host, port=port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    """Entry point: every failure is one clear line on stderr, exit status 1."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    try:
        cli(standalone_mode=False)
    except (ConfigError, AppError) as exc:
        typer.echo(f"error: {getattr(exc, 'message', exc)}", err=True)
        raise SystemExit(1) from None
    except OperationalError as exc:
        typer.echo(f"error: database unavailable or not migrated: {exc.orig}".splitlines()[0], err=True)
        raise SystemExit(1) from None
    except IntegrityError as exc:
        typer.echo(f"error: conflicts with existing data: {exc.orig}".splitlines()[0], err=True)
        raise SystemExit(1) from None
    except (typer.Abort, KeyboardInterrupt):
        raise SystemExit(130) from None
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Exit):
            raise SystemExit(exc.exit_code) from None
        typer.echo(f"error: {exc.__class__.__name__}: {exc}".splitlines()[0], err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
