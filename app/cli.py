"""The `rlhf` command line: database, users, demo data and the development server.

About 530 lines on purpose: twenty commands, each a thin wrapper over a service (typer's
signature is the command's help), grouped by sub-app; one file keeps every command of `rlhf --help`
in one place.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from alembic.config import Config

from app.config import ConfigError, get_settings
from app.enums import Role
from app.errors import AppError

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Run the RLHF loop.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
users_cli = typer.Typer(no_args_is_help=True, help="User accounts.")
demo_cli = typer.Typer(no_args_is_help=True, help="Demo data.")
prompts_cli = typer.Typer(no_args_is_help=True, help="Prompt imports.")
export_cli = typer.Typer(no_args_is_help=True, help="Export batches (training data snapshots).")
cli.add_typer(prompts_cli, name="prompts")
cli.add_typer(export_cli, name="export")
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(demo_cli, name="demo")
rounds_cli = typer.Typer(no_args_is_help=True, help="Training rounds.")
versions_cli = typer.Typer(no_args_is_help=True, help="Model versions and deployment.")
cli.add_typer(rounds_cli, name="rounds")
cli.add_typer(versions_cli, name="versions")
models_cli = typer.Typer(no_args_is_help=True, help="Import pretrained models.")
cli.add_typer(models_cli, name="models")

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


@demo_cli.command("model")
def demo_model(
    size: str = "tiny",
    base: Annotated[str, typer.Option(help="world (the simulated world's small model) or smollm2")] = "world",
) -> None:
    """Build or import the demo's base policy (cached) and deploy it if no policy is deployed."""
    from app.db import session_scope
    from app.demo import DEMO_BASES, ensure_demo_policy

    if base not in DEMO_BASES:
        raise AppError(f"Unknown demo base {base!r}: one of {', '.join(DEMO_BASES)}.")
    world = f"the {size} base model (pre-trained on the world corpus"
    what = world if base == "world" else base + " (imported"
    typer.echo(f"preparing {what} on first use; cached)...")
    with session_scope() as db:
        version = ensure_demo_policy(db, get_settings().data_dir, size=size, base=base)
        deployed = " (deployed)" if version.is_deployed else ""
        typer.echo(f"policy {version.name}{deployed}: {version.path}")


@models_cli.command("import")
def models_import(
    path: Path,
    gguf_file: Annotated[str | None, typer.Option(help="the GGUF file inside PATH")] = None,
    name: Annotated[str | None, typer.Option(help="version name (default: the file's or folder's)")] = None,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16")] = "auto",
    deploy: Annotated[bool, typer.Option("--deploy", help="deploy it as the policy")] = False,
) -> None:
    """Import a GGUF file or a local Hugging Face model directory as a registered policy version."""
    from app.db import session_scope
    from app.policies.service import deploy as deploy_version
    from app.policies.service import import_pretrained

    try:
        with session_scope() as db:
            version = import_pretrained(
                db, path, get_settings().models_dir, name=name, gguf_file=gguf_file, dtype=dtype
            )
            if deploy:
                deploy_version(db, version.id, action="deploy")
            state = " (deployed)" if version.is_deployed else ""
            typer.echo(f"policy #{version.id} {version.name}{state}: {version.path}")
    except (FileNotFoundError, ValueError) as exc:
        raise AppError(str(exc)) from None


@prompts_cli.command("import")
def prompts_import(
    file: Path,
    queue: Annotated[str, typer.Option("--queue", "-q", help="queue id or exact name")],
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help="take nothing if any row is bad")
    ] = False,
) -> None:
    """Import a JSONL or CSV file of prompts into a queue, streaming; bad rows are listed by line."""
    from app.db import session_scope
    from app.prompts.importer import screen_upload
    from app.prompts.service import find_queue, import_file

    if not file.is_file():
        raise AppError(f"No such file: {file}")
    mode = "all_or_nothing" if all_or_nothing else "valid_rows"
    settings = get_settings()
    with file.open("rb") as fh:
        screening = screen_upload(file.name, fh, settings.max_text_chars)  # before the lock
        with session_scope() as db:
            imp = import_file(
                db, settings, find_queue(db, queue).id, file.name, fh, mode, None, screening=screening
            )
        for row in imp.report:
            typer.echo(f"line {row['line']}: {row['kind']}: {row['reason']}", err=True)
        summary = (
            f"import #{imp.id} {imp.status}: {imp.accepted} accepted, {imp.rejected} rejected, "
            f"{imp.duplicates} duplicates, {imp.capped} over the per-user cap, "
            f"{imp.held_for_pii} held for personal-data review"
        )
    typer.echo(summary)
    if imp.status == "failed":
        raise SystemExit(1)


@export_cli.command("create")
def export_create(
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="queue id or name; repeatable")
    ] = None,
    since: Annotated[str | None, typer.Option(help="first UTC day, YYYY-MM-DD")] = None,
    until: Annotated[str | None, typer.Option(help="last UTC day, YYYY-MM-DD")] = None,
    labeler: Annotated[list[str] | None, typer.Option("--labeler", help="username; repeatable")] = None,
    exclude_flag: Annotated[
        list[str] | None, typer.Option("--exclude-flag", help="drop flagged completions")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="train, valid or test; repeatable")
    ] = None,
) -> None:
    """Write a new immutable export batch and print its id, hash, path and row counts."""
    from app.auth.service import get_user_by_username
    from app.db import session_scope
    from app.exports.service import create_export_batch, parse_filters
    from app.prompts.service import find_queue

    with session_scope() as db:
        users = []
        for name in labeler or []:
            user = get_user_by_username(db, name)
            if user is None:
                raise AppError(f"No user {name!r}.")
            users.append(user.id)
        filters = parse_filters(
            {
                "queues": [find_queue(db, q).id for q in queue or []],
                "since": since,
                "until": until,
                "labelers": users,
                "exclude_flags": exclude_flag or [],
                "splits": split or [],
            }
        )
        batch = create_export_batch(db, filters, None)
        line = f"export #{batch.id} {batch.content_hash} {batch.path} " + " ".join(
            f"{k}={v}" for k, v in batch.counts.items()
        )
    typer.echo(line)


@export_cli.command("list")
def export_list() -> None:
    """List export batches, newest first."""
    from app.db import session_scope
    from app.exports.service import list_batches

    with session_scope() as db:
        for b in list_batches(db):
            counts = " ".join(f"{k}={v}" for k, v in b.counts.items())
            typer.echo(f"{b.id}\t{b.created_at:%Y-%m-%d %H:%M}\t{b.content_hash[:16]}\t{counts}\t{b.path}")


@export_cli.command("download")
def export_download(batch_id: int, dest: Path) -> None:
    """Copy a batch's files (manifest, JSONL, Parquet) into DEST/export-<id>."""
    import shutil

    from app.db import session_scope
    from app.exports.service import batch_file

    with session_scope() as db:
        source = batch_file(db, batch_id, "manifest.json").parent
    target = dest / f"export-{batch_id}"
    if target.exists():
        raise AppError(f"{target} already exists.")
    shutil.copytree(source, target)
    typer.echo(str(target))


@cli.command("simulate")
def simulate_cmd(
    base_url: str = "http://127.0.0.1:8000",
    labeler: Annotated[
        list[str] | None, typer.Option("--labeler", "-l", help="username:password; repeatable")
    ] = None,
    tasks: Annotated[int, typer.Option(help="tasks per labeler at most")] = 20,
    queue: Annotated[int | None, typer.Option(help="only this queue id")] = None,
    seed: int = 0,
) -> None:
    """Simulated labelers (from the simulated world) work through the web interface."""
    from app.simulate import simulate

    logins = [tuple(x.split(":", 1)) for x in (labeler or ["alice:alice-demo-pass", "bob:bob-demo-pass"])]
    if any(len(x) != 2 for x in logins):
        raise AppError("Give labelers as username:password.")
    try:
        done = simulate(base_url, [(u, p) for u, p in logins], tasks, queue, seed)
    except httpx.HTTPError as exc:
        raise AppError(f"cannot reach {base_url}: {exc}") from None
    for username, counts in done.items():
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing to do"
        typer.echo(f"{username}: {summary}")


def stage_settings(items: list[str]) -> dict[str, dict[str, Any]]:
    """`--set STAGE.KEY=VALUE` options as per-stage settings; VALUE is read as JSON (2, 0.1, true,
    [1, 2]) and as text when it is not JSON. RoundRequest checks the names, types and ranges."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, text = item.partition("=")
        stage, dot, key = name.strip().partition(".")
        if not (eq and dot and stage and key):
            raise AppError(f"--set takes STAGE.KEY=VALUE (e.g. sft.epochs=2), not {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(stage, {})[key.strip()] = value
    return out


@rounds_cli.command("start")
def rounds_start(
    queue: Annotated[list[int] | None, typer.Option("--queue", help="queue id; repeatable")] = None,
    method: Annotated[
        str, typer.Option(help="instructgpt (SFT, RM, PPO), dpo (SFT, DPO), dpo_ppo (+ implicit RM, PPO)")
    ] = "instructgpt",
    stages: Annotated[
        str, typer.Option(help="a contiguous part of the method's stages, e.g. sft,reward; default: all")
    ] = "",
    preset: Annotated[str, typer.Option(help="quick or paper")] = "quick",
    auto_deploy: Annotated[bool, typer.Option("--auto-deploy", help="deploy when the gate passes")] = False,
    parent: Annotated[int | None, typer.Option(help="parent policy id; default: the deployed one")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="STAGE.KEY=VALUE over the preset, e.g. sft.epochs=2 (VALUE as JSON); repeatable"
        ),
    ] = None,
) -> None:
    """Export the labels, record a round and queue it for a training worker."""
    from pydantic import ValidationError

    from app.db import session_scope
    from app.runs.schemas import DeployGate, RoundRequest
    from app.runs.service import start_round

    settings = stage_settings(setting or [])
    try:
        req = RoundRequest(
            method=method,
            queue_ids=queue or [],
            stages=[s.strip() for s in stages.split(",") if s.strip()],
            preset=preset,
            settings=settings,
            parent_policy_id=parent,
            gate=DeployGate(auto_deploy=auto_deploy),
        )
    except ValidationError as exc:
        message = str(exc.errors()[0].get("msg", "invalid round"))
        raise AppError(message.removeprefix("Value error, ")) from None
    outside = sorted(set(settings) - set(req.stages))
    if outside:
        stage = outside[0]
        raise AppError(f"--set {stage}.*: {stage} is not a stage of this round ({', '.join(req.stages)})")
    with session_scope() as db:
        run = start_round(db, req, by=None)
        run_id, names = run.id, [s.name for s in run.stages]
    url = get_settings().base_url.rstrip("/")
    typer.echo(f"round {run_id} queued ({method}: {' -> '.join(names)}); watch it at {url}/ops/runs/{run_id}")


@rounds_cli.command("list")
def rounds_list(limit: int = 20) -> None:
    """Recent rounds, newest first."""
    from app.db import session_scope
    from app.runs.pages import list_runs

    with session_scope() as db:
        for run in list_runs(db, limit=limit):
            stages = ",".join(s.name for s in run.stages)
            created = run.created_at.strftime("%Y-%m-%d %H:%M")
            parent = run.parent_policy_id or "-"
            typer.echo(
                f"{run.id}\t{run.status}\t{run.progress:.0%}\t{run.method}\t{stages}\t{created}\tparent={parent}"
            )


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


def _worker_cmd(queues: str, concurrency: int, beat: bool = False, name: str = "worker@%h") -> list[str]:
    cmd = [sys.executable, "-m", "celery", "-A", "app.worker:celery_app", "worker",
           "-Q", queues, "-c", str(concurrency), "--loglevel", "INFO", "-n", name]
    return [*cmd, "--beat"] if beat else cmd


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

    proxies = get_settings().trusted_proxies  # fail fast, in one line, on bad settings
    # Forwarded addresses are believed only from TRUSTED_PROXIES (none by default).
    uvicorn.run("app.main:asgi", factory=True, host=host, port=port, workers=workers,
                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)


@cli.command("dev")
def dev(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Web app and one worker process together on the embedded default."""
    import uvicorn

    get_settings()
    # Two processes so a training round does not stall sampling; beat reaps dead rounds, restocks queues.
    # SIGTERM means a cold shutdown here (REMAP_SIGTERM): a running round stops at once and is marked
    # failed in its stage, ready for Resume, instead of holding the worker in a warm shutdown for minutes.
    env = {**os.environ, "REMAP_SIGTERM": "SIGQUIT"}
    proc = subprocess.Popen(_worker_cmd("default,sampling,training", 2, beat=True, name="dev@%h"), env=env)  # noqa: S603
    typer.echo(f"worker started (pid {proc.pid}); web app at http://{host}:{port}/  (Ctrl-C stops both)")
    try:
        uvicorn.run("app.main:asgi", factory=True, host=host, port=port)
    finally:
        _stop_worker(proc)


def _stop_worker(proc: subprocess.Popen[bytes], grace_s: float = 8.0) -> None:
    """Cold-stop the dev worker (its running task fails in place); kill what is left after grace_s."""
    import psutil

    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in family[1:]:  # pool processes and embedded beat, should any outlive their parent
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            continue


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
