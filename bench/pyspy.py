"""Where the web server's CPU goes, by package: py-spy samples of the GIL holder (`--gil`).

`python -m bench.web_load --pyspy` records each level's server (every worker process) with
py-spy and prints the share of samples whose innermost Python frame lies in each package:
SQLAlchemy, psycopg, Starlette/FastAPI, Jinja2, uvicorn, the thread hand-offs (anyio, threading,
concurrent.futures, asyncio), the app's own code and the rest of the standard library. Only the
thread holding the GIL is sampled, so this is Python CPU time, not waiting.

py-spy ships as a binary wheel (`pip install py-spy`); it reads the processes with ptrace (root,
or ptrace_scope 0).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Innermost frame's file -> bucket; the first pattern that matches wins.
# py-spy names a frame's file relative to its sys.path entry ("sqlalchemy/engine/base.py",
# "app/labeling/fast.py", "threading.py", a template's "ranking.html").
BUCKETS: list[tuple[str, str]] = [
    (r"^sqlalchemy/", "SQLAlchemy"),
    (r"^psycopg", "psycopg"),
    (r"^(starlette|fastapi)/", "Starlette/FastAPI"),
    (r"^(anyio|sniffio)/|^threading\.py|^concurrent/futures/|^asyncio/|^queue\.py", "thread hand-offs"),
    (r"^(uvicorn|uvloop|httptools|h11)/", "uvicorn"),
    (r"^(jinja2|markupsafe)/|\.html$", "Jinja2 and templates"),
    (r"^(itsdangerous|python_multipart|multipart)/", "session/forms"),
    (r"^pydantic", "pydantic"),
    (r"^app/", "app"),
    (r"^rlhf_profiled", "bench's counting wrapper"),
]
_FRAME = re.compile(r"\(([^()]*?):\d+\)$")


def available() -> bool:
    """True when the py-spy binary is installed."""
    return _binary() is not None


def _binary() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Record `pid` and its children for `seconds` into `out` (py-spy's raw collapsed stacks)."""
    binary = _binary()
    if binary is None:
        raise RuntimeError("--pyspy needs py-spy: pip install py-spy")
    cmd = [binary, "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking",
           "--rate", "200", "--duration", str(max(1, int(seconds))), "--format", "raw", "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bucket(frame: str) -> str:
    """The bucket of one py-spy frame, "function (path:line)"."""
    m = _FRAME.search(frame.strip())
    path = m.group(1) if m else frame
    path = path.split("site-packages/")[-1]  # a full path, where py-spy gives one
    for pattern, name in BUCKETS:
        if re.search(pattern, path):
            return name
    return "standard library and other"


def shares(raw: str) -> Counter[str]:
    """Samples per bucket of the innermost frame, from py-spy's raw output."""
    out: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out[bucket(stack.split(";")[-1])] += int(count)
    return out


def lines(label: str, raw: str) -> list[str]:
    """The printed summary: each bucket's share of the samples, largest first."""
    counts = shares(raw)
    total = sum(counts.values())
    if not total:
        return [f"{label}  py-spy: no samples (is ptrace allowed?)"]
    parts = ", ".join(f"{name} {100 * n / total:.0f} %" for name, n in counts.most_common())
    return [f"{label}  py-spy (GIL holder, {total} samples): {parts}"]
