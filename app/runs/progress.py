"""The training library's callbacks, recorded on the run: progress, metric series, logs, cancel."""

from __future__ import annotations

import threading
import time
from typing import Any

from app.db import session_scope
from app.runs import service

FLUSH_EVERY_S = 1.0


class RunRecorder:
    """Writes a stage's progress to the database in short transactions, at most once a second.

    Metric points are buffered between flushes so a fast loop does not write a row per step.
    """

    def __init__(self, run_id: int, stage: str, stage_index: int, n_stages: int) -> None:
        self.run_id, self.stage = run_id, stage
        self.stage_index, self.n_stages = stage_index, n_stages
        self._points: list[tuple[int, dict[str, Any]]] = []
        self._logs: list[str] = []
        self._last_flush = 0.0
        self._step, self._total = 0, 0
        self._cancel = False
        self._cancel_checked = 0.0

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Buffer the step's metrics; flush when due or at the end of the stage."""
        self._step, self._total = step, max(total, 1)
        self._points.append((step, dict(metrics)))
        if step >= total or time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def on_log(self, line: str) -> None:
        """Buffer a log line."""
        self._logs.append(line)
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def should_stop(self) -> bool:
        """True once ops asked to cancel (read at most once a second)."""
        if not self._cancel and time.monotonic() - self._cancel_checked >= FLUSH_EVERY_S:
            self._cancel_checked = time.monotonic()
            with session_scope() as db:
                self._cancel = service.cancel_requested(db, self.run_id)
        return self._cancel

    def flush(self) -> None:
        """Write buffered points, logs and the progress fractions."""
        self._last_flush = time.monotonic()
        points, logs, self._points, self._logs = self._points, self._logs, [], []
        fraction = min(1.0, self._step / self._total) if self._total else 0.0
        with session_scope() as db:
            service.record_progress(
                db,
                self.run_id,
                self.stage,
                step=self._step,
                total=self._total,
                run_progress=(self.stage_index + fraction) / self.n_stages,
                points=points,
                logs=logs,
            )


class Heartbeat:
    """A daemon thread that stamps the run while the worker process lives.

    A SIGKILLed worker stops stamping, and the reaper marks the run failed (Settings.run_stale_after_s).
    """

    def __init__(self, run_id: int, every_s: float | None = None) -> None:
        from app.config import get_settings

        self.run_id, self.every_s = run_id, every_s or get_settings().run_heartbeat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-run-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                with session_scope() as db:
                    service.beat(db, self.run_id)
            except Exception:  # noqa: S112 - a missed beat is retried; the database may be restarting
                continue
