"""Throwaway servers the fault tests start and stop by process id: PostgreSQL, Redis, the web app."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.live import free_port

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/usr/bin"))
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster in a temp directory on its own port (never the shared service)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rlhf-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        """A URL for a database on this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def init(self) -> None:
        """initdb with trust auth and no fsync (a throwaway cluster)."""
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                                     "postgres", "--no-sync"]), check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        """pg_ctl start, waiting until it accepts connections."""
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                                     str(self.root / "log"), "-w", "start"]), check=True,
                       stdout=subprocess.DEVNULL)

    def pid(self) -> int:
        """The postmaster's process id (from its pid file)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Fast shutdown of the postmaster, by its pid; waits until it is gone."""
        pid = self.pid()
        os.kill(pid, signal.SIGINT)  # SIGINT = PostgreSQL's "fast" shutdown
        _wait_gone(pid)

    def destroy(self) -> None:
        """Stop (if running) and remove the cluster."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not exit")


@dataclass
class OwnRedis:
    """A redis-server on its own port, without persistence."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The Redis URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait for PONG."""
        import redis

        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis did not start")

    def stop(self) -> None:
        """Kill it by pid and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_web(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn (one process) with `env` over the test environment; waits for /healthz."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "app.main:asgi", "--factory", "--host", "127.0.0.1", "--port",
           str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process we started, by its pid, and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


class Labeler:
    """A browser-like client of the labeling forms (cookies and the CSRF token)."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base, self.username, self.password = base, username, password
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
        self.csrf = ""

    def rebase(self, base: str) -> None:
        """Point at a restarted server (cookies are kept: the session survives a restart)."""
        cookies = self.http.cookies
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30, cookies=cookies)

    def sign_in(self) -> None:
        """Log in through the form."""
        token = CSRF.search(self.http.get("/login").text)
        assert token
        resp = self.http.post("/login", data={"username": self.username, "password": self.password,
                                              "csrf_token": token.group(1)})
        assert resp.status_code == 303, resp.text[:300]
        token = CSRF.search(self.http.get("/label").text)
        assert token
        self.csrf = token.group(1)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        """A form post with the CSRF header."""
        return self.http.post(path, data=data, headers={"X-CSRF-Token": self.csrf})

    def take(self, queue_id: int) -> int | None:
        """Lease the next task of a queue: its assignment id (None when there is none)."""
        resp = self.post("/label/next", {"queue_id": str(queue_id)})
        if resp.status_code != 303:
            raise RetryLater(resp)
        loc = resp.headers["location"]
        return int(loc.rsplit("/", 1)[1]) if loc.startswith("/label/a/") else None

    def ranking_form(self, assignment_id: int) -> dict[str, str]:
        """A valid ranking of the assignment's completions, read from its page."""
        page = self.http.get(f"/label/a/{assignment_id}")
        if page.status_code != 200:
            raise RetryLater(page)
        cids = re.findall(r'name="tier_([A-Z]+)"', page.text)
        form = {}
        for i, cid in enumerate(cids):
            form[f"tier_{cid}"] = str(i + 1)
            form[f"likert_{cid}"] = str(7 - i)
        return form

    def submit(self, assignment_id: int, form: dict[str, str]) -> httpx.Response:
        """POST the ranking."""
        return self.post(f"/label/a/{assignment_id}/ranking", form)


class RetryLater(Exception):
    """The server answered with an error the labeler may retry."""

    def __init__(self, resp: httpx.Response) -> None:
        super().__init__(f"{resp.status_code}: {resp.text[:200]}")
        self.resp = resp
