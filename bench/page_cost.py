"""What the polled pages cost at 10k and at 100k rankings: wall time and SQL statements.

    python -m bench.page_cost [--sizes 10000,100000] [--backends sqlite,postgresql] [--repeat 7]

Seeds each size by bulk insert, then ANALYZE (a K=4 ranking queue with overlap 3, 30 labelers, one label
every 30 s going back in time, so the last 24 h hold the same 2,880 labels at every size; a
running PPO round with 4 metric series of size/4 points each), rebuilds the agreement counters
once (what migration 0005 does for existing data), then requests each polled page through the
app in this process (signed in as an admin with the ops role) and reports the median time and
the statements per request (an SQLAlchemy before_cursor_execute listener), and 100k/10k ratios.
The "recompute" row is the from-scratch agreement the queue progress fragment used to run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import web_setup as ws  # noqa: E402

PASSWORD = "bench-password-123"  # noqa: S105 - throwaway bench user
LABELERS, OVERLAP, K, EVERY_S, CHUNK = 30, 3, 4, 30, 5000
SERIES = ("kl", "loss", "reward", "response_length")
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _ids(conn: Any, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in one executemany; their ids in order."""
    stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(conn.execute(stmt, rows).scalars())


def seed(engine: Any, rankings: int) -> tuple[int, int]:
    """Bulk-load `rankings` rankings (with tasks, completions, assignments) and a long-running round."""
    from app.auth.models import User, UserRole
    from app.db import utcnow
    from app.prompts.models import GuidelineVersion, PromptQueue

    with engine.begin() as conn:
        uids = _ids(conn, User, [{"username": f"lab{i:02d}", "display_name": "", "password_hash": "-"}
                                 for i in range(LABELERS)])
        conn.execute(insert(UserRole), [{"user_id": u, "role": "labeler"} for u in uids])
        (qid,) = _ids(conn, PromptQueue, [{"name": "bench", "kind": "ranking", "k": K, "overlap": OVERLAP}])
        conn.execute(insert(GuidelineVersion).values(queue_id=qid, version=1, body_md="Rank."))
        n_tasks, now = rankings // OVERLAP, utcnow()
        for start in range(0, n_tasks, CHUNK):
            _seed_tasks(conn, qid, uids, start, min(CHUNK, n_tasks - start), now, rankings)
        return qid, _seed_run(conn, rankings // len(SERIES), now)


def _seed_tasks(conn: Any, qid: int, uids: list[int], start: int, count: int, now: Any, total: int) -> None:
    """`count` done tasks of K completions, each ranked by OVERLAP labelers, one label every EVERY_S."""
    from app.labeling.models import Assignment, Task
    from app.prompts.models import Prompt
    from app.rankings.models import Completion, Ranking, RankingEntry

    pids = _ids(conn, Prompt, [{"queue_id": qid, "text": f"prompt {start + i}", "pii_status": "clear",
                                "source": "bench", "meta": {}} for i in range(count)])
    tids = _ids(conn, Task, [{"queue_id": qid, "kind": "ranking", "prompt_id": p, "overlap": OVERLAP,
                              "done_count": OVERLAP, "status": "done"} for p in pids])
    cids = _ids(conn, Completion, [{"task_id": t, "prompt_id": p, "position": k, "text": f"answer {k}",
                                    "sampling_params": {}}
                                   for t, p in zip(tids, pids, strict=True) for k in range(K)])
    slots = [(t, uids[(i * OVERLAP + j) % LABELERS], cids[i * K:(i + 1) * K])
             for i, t in enumerate(tids) for j in range(OVERLAP)]
    first = start * OVERLAP
    at = [now - timedelta(seconds=EVERY_S * (total - first - n)) for n in range(len(slots))]
    spent = [20_000 + (t * 7919 % 40_000) for t, _, _ in slots]
    aids = _ids(conn, Assignment, [
        {"task_id": t, "user_id": u, "status": "submitted", "leased_at": a, "lease_expires_at": a,
         "finished_at": a, "time_spent_ms": ms, "display_order": c}
        for (t, u, c), a, ms in zip(slots, at, spent, strict=True)])
    rids = _ids(conn, Ranking, [
        {"assignment_id": aid, "task_id": t, "user_id": u, "display_order": c, "created_at": a,
         "time_spent_ms": ms} for aid, (t, u, c), a, ms in zip(aids, slots, at, spent, strict=True)])
    conn.execute(insert(RankingEntry), [
        {"ranking_id": r, "completion_id": c, "tier": 1 + (r * 31 + k * 17) % K, "flags": []}
        for r, (_, _, cs) in zip(rids, slots, strict=True) for k, c in enumerate(cs)])


def _seed_run(conn: Any, points: int, now: Any) -> int:
    """A running PPO round with len(SERIES) metric series of `points` steps each."""
    from app.runs.models import RunMetric, RunStage, TrainingRun

    (rid,) = _ids(conn, TrainingRun, [{"status": "running", "config": {"stages": ["ppo"]}, "progress": 0.5,
                                       "current_stage": "ppo", "started_at": now}])
    conn.execute(insert(RunStage).values(run_id=rid, name="ppo", ordinal=0, status="running"))
    for name in SERIES:
        for start in range(0, points, CHUNK * 4):
            conn.execute(insert(RunMetric), [
                {"run_id": rid, "stage": "ppo", "name": name, "step": s, "value": 1.0 / (1 + s)}
                for s in range(start, min(points, start + CHUNK * 4))])
    return rid


def rebuild_counters() -> float:
    """Agreement counters for the bulk-loaded rankings, as migration 0005 computes them; seconds."""
    from app.db import session_scope
    from app.quality import counters

    t0 = time.perf_counter()
    with session_scope() as db:
        counters.rebuild(db)
    return time.perf_counter() - t0


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every statement the app's engine runs inside the block."""
    from app.db import get_engine

    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, int]:
    """Median milliseconds over `repeat` calls (after one warm-up) and statements per call."""
    fn()
    times, counts = [], []
    for _ in range(repeat):
        with statements() as seen:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        counts.append(len(seen))
    return statistics.median(times), max(counts)


def admin_client() -> Any:
    """A TestClient signed in as a new admin + ops user."""
    from fastapi.testclient import TestClient

    from app.auth.service import create_user
    from app.db import session_scope
    from app.main import create_app

    with session_scope() as db:
        create_user(db, "bench_admin", PASSWORD, ("admin", "ops"))
    web = TestClient(create_app(), base_url="http://testserver", follow_redirects=False)
    token = _CSRF.search(web.get("/login").text)
    assert token, "no CSRF token on /login"
    resp = web.post("/login", data={"username": "bench_admin", "password": PASSWORD, "csrf_token": token[1]})
    assert resp.status_code == 303, resp.text[:300]
    return web


def run_size(backend: str, size: int, args: argparse.Namespace) -> dict[str, tuple[float, int]]:
    """Seed one database with `size` rankings and measure each polled page there."""
    from app.config import get_settings
    from app.db import reset_engine, session_scope
    from app.quality import service as quality

    target = ws.create_target(backend, args.pg_admin_url)
    try:
        ws.migrate(target)
        engine = target.engine()
        t0 = time.perf_counter()
        qid, rid = seed(engine, size)
        # Planner statistics for the bulk-loaded rows, as a live database has them.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
        engine.dispose()
        os.environ.update({"DATABASE_URL": target.url, "DATA_DIR": str(target.data_dir), "REDIS_URL": "",
                           "RLHF_ENV": "development"})
        get_settings.cache_clear()
        reset_engine()
        rebuild_s = rebuild_counters()
        print(f"# {backend} {size}: seeded in {time.perf_counter() - t0:.0f} s, counters rebuilt in "
              f"{rebuild_s:.1f} s", file=sys.stderr, flush=True)
        web = admin_client()
        pages = {
            "queue progress fragment (every 10 s)": f"/admin/queues/{qid}/progress",
            "quality page": "/admin/quality",
            "run page live part (every 2 s)": f"/ops/runs/{rid}?part=live",
        }
        out = {}
        for label, url in pages.items():
            def get(url: str = url) -> None:
                resp = web.get(url)
                assert resp.status_code == 200, (url, resp.status_code)
            out[label] = measure(get, args.repeat)

        def recompute() -> None:
            with session_scope() as db:
                quality.agreement(db, qid)
        out["(before) from-scratch agreement of the queue"] = measure(recompute, max(1, args.repeat // 3))
        return out
    finally:
        from app.db import reset_engine as _reset

        _reset()
        ws.drop_target(target)


def main(argv: list[str] | None = None) -> None:
    """Run every backend at every size and print one table per backend."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--pg-admin-url",
                   default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for backend in args.backends.split(","):
        results = {size: run_size(backend, size, args) for size in sizes}
        small, large = results[sizes[0]], results[sizes[-1]]
        print(f"\n{backend}: {sizes[0]:,} vs {sizes[-1]:,} rankings (median of {args.repeat})")
        print(f"| page | statements | ms at {sizes[0] // 1000}k | ms at {sizes[-1] // 1000}k | ratio |")
        print("|---|---|---|---|---|")
        for label in small:
            (ms_a, st_a), (ms_b, st_b) = small[label], large[label]
            print(f"| {label} | {st_a} / {st_b} | {ms_a:.1f} | {ms_b:.1f} | {ms_b / ms_a:.2f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
