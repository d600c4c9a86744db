"""Load benchmark of the labeling flow: C concurrent labelers against a production-shaped server.

    python -m bench.web_load                       # PostgreSQL and SQLite, C = 1, 8, 32, 64
    python -m bench.web_load --backends postgresql --levels 32 --seconds 20
    python -m bench.web_load --profile --levels 32      # statements and CPU per cycle and per request
    python -m bench.web_load --server-root /other/checkout   # serve another checkout's app

Each simulated labeler is a distinct signed-in user with its own keep-alive connection
(raw http.client: parsing is a regex, so the generator stays light). It loops: GET its ranking
task page, POST a valid K=4 ranking (tiers, Likert ratings, sometimes a flag) and follow the
303 to its next task; a fraction of cycles is a demonstration instead. Every level is bounded
in time (--seconds) and in cycles (--max-cycles). The generator runs in --clients processes
and reports its own CPU use next to the server's.

At the end the database is checked: stored rankings equal acknowledged submits exactly, no
task beyond its overlap, no labeler served the same item twice. This is a benchmark: it
prints figures, it is not a timed test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import resource
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import pyspy
from bench import web_setup as ws

CSRF = re.compile(rb'<meta name="csrf-token" content="([^"]+)"')
TIER = re.compile(rb'name="tier_([A-Z]+)"')
FLAG_KEYS = ("hallucination", "harmful_advice")
LOCKED = b"database is locked"
PROFILED = Path(__file__).resolve().parent / "profiled"  # holds rlhf_profiled.py (--profile)


@dataclass
class Result:
    """What one client process measured."""

    fetch_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    rankings: list[int] = field(default_factory=list)  # acknowledged assignment ids
    demos: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    locked: int = 0
    cpu_s: float = 0.0


class Labeler:
    """One signed-in user on its own keep-alive connection."""

    def __init__(
        self, port: int, username: str, seeded: ws.Seeded, res: Result, lock: threading.Lock
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.username, self.seeded, self.res, self.lock = username, seeded, res, lock
        self.cookie = ""
        self.csrf = ""
        self.rng = random.Random(username)

    def request(
        self, method: str, path: str, form: dict[str, Any] | list[tuple[str, str]] | None = None
    ) -> tuple[int, str, bytes]:
        """One request on the keep-alive connection (reconnects once if the server closed it)."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            if self.csrf:
                headers["X-CSRF-Token"] = self.csrf
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt:
                    raise
        cookie = resp.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return resp.status, resp.getheader("location") or "", data

    def error(self, what: str, status: int, body: bytes) -> None:
        """Count an unexpected answer."""
        key = f"{what} {status}"
        with self.lock:
            self.res.errors[key] = self.res.errors.get(key, 0) + 1
            if LOCKED in body:
                self.res.locked += 1

    def sign_in(self) -> bool:
        """Log in through the form and read the session's CSRF token."""
        _, _, page = self.request("GET", "/login")
        m = CSRF.search(page)
        self.csrf = m.group(1).decode() if m else ""
        status, _, body = self.request("POST", "/login", {"username": self.username, "password": ws.PASSWORD})
        if status != 303:
            self.error("login", status, body)
            return False
        status, _, page = self.request("GET", "/label")
        m = CSRF.search(page)
        self.csrf = m.group(1).decode() if m else ""
        return status == 200 and bool(self.csrf)

    def take(self, queue_id: int) -> str | None:
        """POST /label/next for a queue: the task page path, or None when nothing is left."""
        status, loc, body = self.request("POST", "/label/next", {"queue_id": str(queue_id)})
        if status != 303:
            self.error("next", status, body)
            return None
        return loc if loc.startswith("/label/a/") else None

    def ranking_cycle(self, path: str) -> str | None:
        """Fetch a ranking page and submit a valid ranking; the next task's path."""
        t0 = time.perf_counter()
        status, _, page = self.request("GET", path)
        t1 = time.perf_counter()
        cids = [m.decode() for m in TIER.findall(page)]
        if status != 200 or len(cids) != 4:
            self.error("fetch", status, page)
            return None
        tiers = [1, 2, 3, 4] if self.rng.random() < 0.8 else [1, 1, 2, 3]
        self.rng.shuffle(cids)
        form: list[tuple[str, str]] = []
        for cid, tier in zip(cids, tiers, strict=True):
            form += [(f"tier_{cid}", str(tier)), (f"likert_{cid}", str(8 - tier - self.rng.randint(0, 2)))]
            if self.rng.random() < 0.1:
                form.append((f"flags_{cid}", self.rng.choice(FLAG_KEYS)))
        status, loc, body = self.request("POST", path + "/ranking", form)
        t2 = time.perf_counter()
        with self.lock:
            self.res.fetch_ms.append((t1 - t0) * 1000)
            self.res.submit_ms.append((t2 - t1) * 1000)
        if status != 303:
            self.error("submit", status, body)
            return None
        with self.lock:
            self.res.rankings.append(int(path.rsplit("/", 1)[1]))
        return loc if loc.startswith("/label/a/") else None

    def demo_cycle(self) -> None:
        """Take a demonstration task, write an answer, submit it."""
        path = self.take(self.seeded.demo_queue)
        if path is None:
            return
        status, _, page = self.request("GET", path)
        if status != 200:
            self.error("demo fetch", status, page)
            return
        text = f"A demonstration by {self.username}: the sky is blue because of Rayleigh scattering."
        status, _, body = self.request("POST", path + "/demonstration", {"text": text})
        if status != 303:
            self.error("demo submit", status, body)
            return
        with self.lock:
            self.res.demos.append(int(path.rsplit("/", 1)[1]))


def sign_in_all(port: int, users: list[str], seeded: ws.Seeded) -> list[tuple[str, str, str]]:
    """Sign every labeler in, one at a time (password hashing is slow on purpose): (user, cookie, csrf)."""
    out = []
    for u in users:
        lab = Labeler(port, u, seeded, Result(), threading.Lock())
        if not lab.sign_in():
            raise RuntimeError(f"{u} could not sign in: {lab.res.errors}")
        out.append((u, lab.cookie, lab.csrf))
        lab.conn.close()
    return out


def client_process(
    port: int,
    users: list[tuple[str, str, str]],
    seeded: ws.Seeded,
    seconds: float,
    max_cycles: int,
    demo_fraction: float,
    out: Any,
) -> None:
    """One generator process: a thread per signed-in labeler; sends its Result back through `out`."""
    res = Result()
    lock = threading.Lock()
    budget = [max_cycles]
    labs = []
    for u, cookie, csrf in users:
        lab = Labeler(port, u, seeded, res, lock)
        lab.cookie, lab.csrf = cookie, csrf
        labs.append(lab)
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=_loop, args=(lab, deadline, budget, demo_fraction)) for lab in labs]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out.send(res)
    out.close()


def _loop(lab: Labeler, deadline: float, budget: list[int], demo_fraction: float) -> None:
    path = lab.take(lab.seeded.ranking_queue)
    while path is not None and time.monotonic() < deadline:
        with lab.lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        try:
            if lab.rng.random() < demo_fraction:
                lab.demo_cycle()
                path = lab.take(lab.seeded.ranking_queue)
                continue
            path = lab.ranking_cycle(path)
            if path is None:
                path = lab.take(lab.seeded.ranking_queue)
        except (OSError, http.client.HTTPException) as exc:
            lab.error(f"connection {type(exc).__name__}", 0, b"")
            return


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def run_level(
    port: int, server_pid: int, users: list[tuple[str, str, str]], seeded: ws.Seeded, args: argparse.Namespace
) -> tuple[Result, float, float]:
    """Run C labelers spread over the client processes; (merged result, seconds, server CPU s)."""
    nproc = max(1, min(args.clients, len(users)))
    groups = [users[i::nproc] for i in range(nproc)]
    ctx = mp.get_context("fork")
    pipes, procs = [], []
    cpu0 = ws.tree_cpu_seconds(server_pid)
    t0 = time.monotonic()
    for g in groups:
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=client_process,
            args=(port, g, seeded, args.seconds, max(1, args.max_cycles // nproc), args.demo_fraction, tx),
        )
        p.start()
        pipes.append(rx)
        procs.append(p)
    merged = Result()
    for rx in pipes:
        r: Result = rx.recv()
        merged.fetch_ms += r.fetch_ms
        merged.submit_ms += r.submit_ms
        merged.rankings += r.rankings
        merged.demos += r.demos
        merged.locked += r.locked
        merged.cpu_s += r.cpu_s
        for k, v in r.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    return merged, elapsed, ws.tree_cpu_seconds(server_pid) - cpu0


def profile_snapshot(
    folder: Path | None, target: ws.Target
) -> tuple[dict[str, list[float]], dict[int, float]]:
    """Per-route counters summed over the server's workers, and PostgreSQL backend CPU seconds."""
    if folder is None:
        return {}, {}
    time.sleep(0.6)  # the workers write their counters every 0.25 s
    routes: dict[str, list[float]] = {}
    for f in folder.glob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for key, row in data.items():
            acc = routes.setdefault(key, [0.0] * len(row))
            for i, v in enumerate(row):
                acc[i] += v
    return routes, ws.pg_backend_cpu_seconds(target)


def profile_lines(
    backend: str, c: int, before: tuple[dict[str, list[float]], dict[int, float]],
    after: tuple[dict[str, list[float]], dict[int, float]], cycles: int, server_cpu: float,
) -> list[str]:
    """What one level cost per cycle (statements, round trips, CPU) and per request kind."""
    per = max(1, cycles)
    diff = {
        k: [v - (before[0].get(k) or [0.0] * len(row))[i] for i, v in enumerate(row)]
        for k, row in after[0].items()
    }
    diff = {k: row for k, row in diff.items() if row[0] > 0}
    stmts = sum(r[1] for r in diff.values())
    trips = sum(r[1] + r[2] + r[3] + r[4] for r in diff.values())
    pg_cpu = sum(v - before[1].get(pid, 0.0) for pid, v in after[1].items())
    pg = f", PostgreSQL CPU/cycle {pg_cpu / per * 1000:5.1f} ms" if backend == "postgresql" else ""
    out = [
        f"{backend:10s} C={c:<3d} profile: {cycles} cycles, statements/cycle {stmts / per:5.2f}, "
        f"round trips/cycle {trips / per:5.2f} (statements + commits + rollbacks + checkouts), "
        f"server CPU/cycle {server_cpu / per * 1000:5.1f} ms{pg}"
    ]
    for key, (n, st, cm, rb, co, wall) in sorted(diff.items(), key=lambda kv: -kv[1][0]):
        out.append(
            f"{'':10s}   {key:34s} {int(n):6d} requests  statements {st / n:5.2f}  commits {cm / n:4.2f}  "
            f"rollbacks {rb / n:4.2f}  checkouts {co / n:4.2f}  mean {wall / n:6.1f} ms"
        )
    return out


def bench_backend(backend: str, args: argparse.Namespace) -> list[str]:
    """Create, seed, serve and load one backend; returns the result lines (and checks)."""
    levels = [int(c) for c in args.levels.split(",")]
    budget = args.max_cycles * len(levels)
    target = ws.create_target(backend, args.pg_url)
    lines: list[str] = []
    try:
        ws.migrate(target)
        t = time.monotonic()
        seeded = ws.seed(
            target,
            max(levels),
            ranking_tasks=budget // args.overlap + max(levels) * 2,
            demo_tasks=int(budget * args.demo_fraction * 2) + 50,
            overlap=args.overlap,
        )
        print(f"[{backend}] seeded in {time.monotonic() - t:.1f} s", flush=True)
        # SQLite is the embedded default, served by one process (`rlhf dev`); PostgreSQL by two.
        workers = args.workers or (1 if backend == "sqlite" else 2)
        pool, overflow = args.pool_size, args.max_overflow
        env = ws.server_env(target, pool, overflow)
        env["WEB_THREADS"] = str(args.threads)
        root = Path(args.server_root).resolve()
        app_ref = "app.main:asgi"
        env["PYTHONPATH"] = str(root)
        profile_dir = None
        if args.profile:
            profile_dir = Path(tempfile.mkdtemp(prefix="rlhf-profile-"))
            env["RLHF_PROFILE_DIR"] = str(profile_dir)
            env["PYTHONPATH"] = f"{root}{os.pathsep}{PROFILED}"
            app_ref = "rlhf_profiled:asgi"
        proc, port = ws.start_server(env, workers, root=root, app=app_ref)
        sessions = sign_in_all(port, seeded.usernames, seeded)
        acked_r: set[int] = set()
        acked_d: set[int] = set()
        try:
            for c in levels:
                ws.analyze(target)  # statistics as of the level's start (see ws.analyze)
                load0 = os.getloadavg()[0]
                before = profile_snapshot(profile_dir, target)
                print(f"[{backend}] C={c} running {args.seconds:.0f} s (server pid {proc.pid})", flush=True)
                spy = None
                if args.pyspy:
                    spy_out = Path(tempfile.mkdtemp(prefix="rlhf-pyspy-")) / "raw.txt"
                    spy = pyspy.start(proc.pid, args.seconds, spy_out)
                res, secs, server_cpu = run_level(port, proc.pid, sessions[:c], seeded, args)
                after = profile_snapshot(profile_dir, target)
                acked_r.update(res.rankings)
                acked_d.update(res.demos)
                n = len(res.submit_ms)
                errs = sum(res.errors.values())
                lines.append(
                    f"{backend:10s} C={c:<3d} cycles/s {n / args.seconds:7.1f}  "
                    f"fetch p50/p95/p99 {pct(res.fetch_ms, 50):6.1f}/{pct(res.fetch_ms, 95):6.1f}/"
                    f"{pct(res.fetch_ms, 99):6.1f} ms  submit p50/p95/p99 {pct(res.submit_ms, 50):6.1f}/"
                    f"{pct(res.submit_ms, 95):6.1f}/{pct(res.submit_ms, 99):6.1f} ms  "
                    f"demos {len(res.demos):4d}  "
                    f"errors {errs} (locked {res.locked})  client CPU {res.cpu_s / args.seconds:4.2f} cores  "
                    f"server CPU {server_cpu / secs:4.2f} cores ({workers} worker"
                    f"{'s' if workers > 1 else ''})  load {load0:.1f}"
                )
                print(lines[-1], flush=True)
                if profile_dir is not None:
                    cycles = len(res.submit_ms) + len(res.demos)
                    prof = profile_lines(backend, c, before, after, cycles, server_cpu)
                    lines += prof
                    print("\n".join(prof), flush=True)
                if spy is not None:
                    spy.wait(timeout=args.seconds + 60)
                    raw = spy_out.read_text() if spy_out.exists() else ""
                    lines += pyspy.lines(f"{backend:10s} C={c:<3d}", raw)
                    print(lines[-1], flush=True)
                if res.errors:
                    print(f"           errors: {res.errors}", flush=True)
        finally:
            ws.stop_server(proc)
        problems = ws.check(target, acked_r, acked_d)
        verdict = "OK" if not problems else "FAILED: " + "; ".join(problems)
        lines.append(
            f"{backend:10s} database check: {len(acked_r)} rankings and {len(acked_d)} demonstrations "
            f"acknowledged = stored; overlap and never-twice: {verdict}"
        )
        print(lines[-1], flush=True)
    finally:
        if not args.keep:
            ws.drop_target(target)
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the README's production settings on this 2-core machine)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--levels", default="1,8,32,64", help="concurrent labelers per level")
    p.add_argument("--seconds", type=float, default=15.0, help="measured time per level")
    p.add_argument("--max-cycles", type=int, default=6000, help="cycles per level at most")
    p.add_argument("--demo-fraction", type=float, default=0.05)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "0")),
                   help="uvicorn workers (default: 2 on PostgreSQL, 1 on SQLite as `rlhf dev` runs it)")
    p.add_argument("--threads", type=int, default=4,
                   help="WEB_THREADS: sync threads per server process (recommended 4; the app default is 40)")
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--max-overflow", type=int, default=30)
    p.add_argument("--clients", type=int, default=2, help="generator processes")
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    p.add_argument("--profile", action="store_true",
                   help="count statements, round trips and CPU per cycle and per request kind")
    p.add_argument("--server-root", default=str(ws.ROOT),
                   help="the checkout whose app is served (e.g. another branch's, for a before/after)")
    p.add_argument("--keep", action="store_true", help="keep the bench database (for a look afterwards)")
    p.add_argument("--pyspy", action="store_true",
                   help="sample the server with py-spy (GIL holder) and print CPU shares by package")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run every backend and print the table."""
    args = parse_args(argv)
    print(
        f"web load: levels {args.levels}, {args.seconds:.0f} s each (at most {args.max_cycles} cycles), "
        f"uvicorn --workers {args.workers or '2 (PostgreSQL) / 1 (SQLite)'}, "
        f"{args.threads} threads per worker, pool {args.pool_size}+{args.max_overflow}, "
        f"{args.clients} client processes, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    lines: list[str] = []
    for backend in args.backends.split(","):
        lines += bench_backend(backend.strip(), args)
    print("\n".join(["", "summary", *lines, f"load average at end {os.getloadavg()}"]))


if __name__ == "__main__":
    main()
