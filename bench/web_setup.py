"""Databases and servers for bench.web_load: create, seed, serve, check and drop.

Seeding writes rows directly (one password hash shared by every labeler) so that setting up
thousands of tasks takes seconds; the load itself goes only through the web forms.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-123"  # noqa: S105 - throwaway bench users


@dataclass
class Target:
    """One database the benchmark runs against, and how to reach and remove it."""

    backend: str  # "postgresql" | "sqlite"
    url: str
    data_dir: Path
    admin_url: str = ""
    name: str = ""

    def engine(self) -> Engine:
        """A plain engine on the bench database (for seeding and the final check)."""
        if self.backend == "sqlite":
            return create_engine(self.url, connect_args={"timeout": 30})
        return create_engine(make_url(self.url).set(drivername="postgresql+psycopg"))


def create_target(backend: str, pg_admin_url: str) -> Target:
    """Create an empty bench database (PostgreSQL: a new database; SQLite: a temp file)."""
    data_dir = Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
    if backend == "sqlite":
        return Target("sqlite", f"sqlite:///{data_dir / 'rlhf.sqlite3'}", data_dir)
    name = f"rlhf_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(pg_admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    return Target("postgresql", url, data_dir, admin_url=pg_admin_url, name=name)


def drop_target(target: Target) -> None:
    """Remove the bench database and its data directory."""
    import shutil

    if target.backend == "postgresql":
        admin = create_engine(
            make_url(target.admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": target.name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.name}"'))
        admin.dispose()
    shutil.rmtree(target.data_dir, ignore_errors=True)


def server_env(target: Target, pool_size: int, max_overflow: int) -> dict[str, str]:
    """The environment of a production-shaped server on the bench database."""
    return {
        **os.environ,
        "RLHF_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": target.url,
        "DATA_DIR": str(target.data_dir),
        "REDIS_URL": "",
        "DB_POOL_SIZE": str(pool_size),
        "DB_MAX_OVERFLOW": str(max_overflow),
        "PYTHONPATH": str(ROOT),
    }


def migrate(target: Target) -> None:
    """Alembic to head, as `rlhf db upgrade` does in production."""
    env = server_env(target, 1, 0)
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class Seeded:
    """Ids the load generator needs."""

    ranking_queue: int
    demo_queue: int
    usernames: list[str] = field(default_factory=list)


def seed(target: Target, labelers: int, ranking_tasks: int, demo_tasks: int, overlap: int) -> Seeded:
    """Labelers, a K=4 ranking queue and a demonstration queue, stocked with tasks."""
    sys.path.insert(0, str(ROOT))
    from app.auth.models import User, UserRole
    from app.auth.passwords import hash_password
    from app.labeling.models import Task
    from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
    from app.rankings.models import Completion

    engine = target.engine()
    pw = hash_password(PASSWORD)
    names = [f"bench{i:03d}" for i in range(labelers)]
    with engine.begin() as conn:
        uids = [
            conn.execute(
                insert(User)
                .values(
                    username=n,
                    display_name=n,
                    password_hash=pw,
                    is_active=True,
                    is_paused=False,
                    session_epoch=0,
                )
                .returning(User.id)
            ).scalar_one()
            for n in names
        ]
        conn.execute(insert(UserRole), [{"user_id": u, "role": "labeler"} for u in uids])
        qids = {}
        for kind in ("ranking", "demonstration"):
            qid = conn.execute(
                insert(PromptQueue)
                .values(
                    name=f"bench {kind}",
                    kind=kind,
                    k=4,
                    overlap=overlap,
                    priority=0,
                    is_paused=False,
                    low_water=0,
                    sampling={},
                    gold_rate=0.0,
                )
                .returning(PromptQueue.id)
            ).scalar_one()
            conn.execute(
                insert(GuidelineVersion).values(queue_id=qid, version=1, body_md="Rank by *helpfulness*.")
            )
            qids[kind] = qid
        for kind, n in (("ranking", ranking_tasks), ("demonstration", demo_tasks)):
            _stock(conn, Prompt, Task, Completion, qids[kind], kind, n, overlap)
    engine.dispose()
    analyze(target)  # statistics for the bulk-loaded rows (autovacuum would get there, minutes later)
    return Seeded(qids["ranking"], qids["demonstration"], names)


def analyze(target: Target) -> None:
    """Refresh the planner's statistics, as autovacuum does on a running PostgreSQL server.

    This machine's server runs with autovacuum off, so tables that start empty (rankings, their
    entries, assignments) would keep "empty" statistics for the whole run, and the planner hashes
    thousands of rows where a server in use looks up a few by index."""
    engine = target.engine()
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def _stock(conn, Prompt, Task, Completion, qid: int, kind: str, n: int, overlap: int) -> None:
    body = "Explain, in two short paragraphs, why the sky looks blue at noon and red at dusk. " * 2
    chunk = 500
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        pids = list(
            conn.execute(
                insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True),
                [
                    {
                        "queue_id": qid,
                        "text": f"{start + i}: {body}",
                        "pii_status": "clear",
                        "source": "bench",
                        "meta": {},
                    }
                    for i in range(count)
                ],
            ).scalars()
        )
        tids = list(
            conn.execute(
                insert(Task).returning(Task.id, sort_by_parameter_order=True),
                [
                    {
                        "queue_id": qid,
                        "kind": kind,
                        "prompt_id": p,
                        "overlap": overlap,
                        "done_count": 0,
                        "status": "open",
                        "hint": "",
                        "is_gold": False,
                    }
                    for p in pids
                ],
            ).scalars()
        )
        if kind == "ranking":
            conn.execute(
                insert(Completion),
                [
                    {
                        "task_id": t,
                        "prompt_id": p,
                        "position": k,
                        "finished": True,
                        "sampling_params": {},
                        "text": f"Completion {k} of task {t}. "
                        + "Rayleigh scattering favours short waves. " * 6,
                    }
                    for t, p in zip(tids, pids, strict=True)
                    for k in range(4)
                ],
            )


def check(target: Target, acked_rankings: set[int], acked_demos: set[int]) -> list[str]:
    """Problems with the stored data: each must be absent for the run to count."""
    from app.demonstrations.models import Demonstration
    from app.labeling.models import Assignment, Task
    from app.rankings.models import Ranking, RankingEntry

    problems: list[str] = []
    engine = target.engine()
    with engine.connect() as conn:
        stored = set(conn.execute(select(Ranking.assignment_id)).scalars())
        demos = set(conn.execute(select(Demonstration.assignment_id)).scalars())
        if stored != acked_rankings:
            problems.append(
                f"rankings stored {len(stored)} != acknowledged {len(acked_rankings)} "
                f"(missing {len(acked_rankings - stored)}, unacknowledged {len(stored - acked_rankings)})"
            )
        if demos != acked_demos:
            problems.append(f"demonstrations stored {len(demos)} != acknowledged {len(acked_demos)}")
        short = conn.execute(
            select(func.count()).select_from(
                select(RankingEntry.ranking_id)
                .group_by(RankingEntry.ranking_id)
                .having(func.count() != 4)
                .subquery()
            )
        ).scalar_one()
        if short:
            problems.append(f"{short} rankings without exactly 4 entries")
        over = conn.execute(
            select(func.count()).select_from(Task).where(Task.done_count > Task.overlap)
        ).scalar_one()
        labels = conn.execute(
            select(func.count()).select_from(
                select(Assignment.task_id)
                .where(Assignment.status.in_(["submitted", "leased"]))
                .group_by(Assignment.task_id)
                .having(
                    func.count() > select(Task.overlap).where(Task.id == Assignment.task_id).scalar_subquery()
                )
                .subquery()
            )
        ).scalar_one()
        if over or labels:
            problems.append(f"{over + labels} tasks beyond their overlap")
        twice = conn.execute(
            select(func.count()).select_from(
                select(Assignment.task_id)
                .group_by(Assignment.task_id, Assignment.user_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        twice += conn.execute(
            select(func.count()).select_from(
                select(Ranking.task_id)
                .group_by(Ranking.task_id, Ranking.user_id)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        if twice:
            problems.append(f"{twice} items served to the same labeler twice")
        done = conn.execute(select(func.coalesce(func.sum(Task.done_count), 0))).scalar_one()
        if done != len(stored) + len(demos):
            problems.append(f"task done counts {done} != stored labels {len(stored) + len(demos)}")
    engine.dispose()
    return problems


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    env: dict[str, str], workers: int, root: Path = ROOT, app: str = "app.main:asgi"
) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn with the production settings the README recommends; waits for /healthz.

    `root`: the checkout whose app is served (another one's for a before/after comparison).
    """
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--backlog",
        "2048",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=root, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group (started by us, by pid)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process and its live children."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def pg_backend_cpu_seconds(target: Target) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the bench database (same host)."""
    import psutil

    if target.backend != "postgresql":
        return {}
    engine = create_engine(make_url(target.admin_url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
            {"d": target.name},
        ).scalars().all()
    engine.dispose()
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out
