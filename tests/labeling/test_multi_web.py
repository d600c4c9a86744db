"""Two web processes, each with its own connection pool, against one PostgreSQL through PgBouncer
in transaction mode: labelers on both share the tasks with no slot handed out twice.

The servers are real uvicorn processes serving the production app; the labelers go through the
web forms (fetch a ranking page, submit, follow the redirect to the next task) until the queue
is drained. Afterwards the database must hold exactly the acknowledged labels, no task beyond
its overlap and no item twice for a labeler (bench.web_setup.check), and every slot filled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench import web_load as wl
from bench import web_setup as ws

TEST_DB = os.environ.get("TEST_DB", "postgresql")
PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
pytestmark = pytest.mark.skipif(TEST_DB == "sqlite", reason="PgBouncer fronts PostgreSQL only")

LABELERS = 8
TASKS = 24
OVERLAP = 3


def _pgbouncer(folder: Path, pg_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """PgBouncer in transaction mode in front of the test server (trust auth, as the test server)."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("pgbouncer is not installed (make test installs it: apt-get install pgbouncer)")
    port = ws.free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={pg_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 6\nmax_client_conn = 200\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    )
    folder.chmod(0o777)
    for f in folder.iterdir():
        f.chmod(0o666)
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    proc = subprocess.Popen([binary, *user, str(folder / "pgbouncer.ini")], start_new_session=True)
    deadline = time.monotonic() + 20
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("pgbouncer did not start: " + (folder / "pgbouncer.log").read_text(errors="replace")[-500:])


def test_two_web_processes_share_the_queue_without_double_assignment() -> None:
    target = ws.create_target("postgresql", PG_ADMIN_URL)
    folder = Path(tempfile.mkdtemp(prefix="rlhf-pgbouncer-"))
    servers: list[subprocess.Popen[bytes]] = []
    bouncer = None
    try:
        ws.migrate(target)
        seeded = ws.seed(target, LABELERS, ranking_tasks=TASKS, demo_tasks=6, overlap=OVERLAP)
        bouncer, bport = _pgbouncer(folder, make_url(PG_ADMIN_URL).port or 5432)
        env = ws.server_env(target, pool_size=3, max_overflow=2)
        env["DATABASE_URL"] = make_url(target.url).set(host="127.0.0.1", port=bport).render_as_string(False)
        env["DB_PGBOUNCER"] = "true"
        ports = []
        for _ in range(2):  # two processes, two pools
            proc, port = ws.start_server(env, workers=1)
            servers.append(proc)
            ports.append(port)
        half = LABELERS // 2
        results = [wl.Result(), wl.Result()]
        lock = threading.Lock()
        labs = []
        for i, name in enumerate(seeded.usernames):
            which = 0 if i < half else 1
            lab = wl.Labeler(ports[which], name, seeded, results[which], lock)
            assert lab.sign_in(), lab.res.errors
            labs.append(lab)
        deadline = time.monotonic() + 120
        threads = [threading.Thread(target=wl._loop, args=(lab, deadline, [10_000], 0.1)) for lab in labs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            assert not r.errors, r.errors
            assert r.rankings, "each web process served submits"
        acked_r = set(results[0].rankings) | set(results[1].rankings)
        acked_d = set(results[0].demos) | set(results[1].demos)
        assert len(acked_r) == len(results[0].rankings) + len(results[1].rankings)
        assert ws.check(target, acked_r, acked_d) == []
        assert len(acked_r) == TASKS * OVERLAP, "the queue was drained: every slot filled once"
    finally:
        for proc in servers:
            ws.stop_server(proc)
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(timeout=10)
        ws.drop_target(target)
        shutil.rmtree(folder, ignore_errors=True)
