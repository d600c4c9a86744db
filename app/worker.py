"""The Celery app, built from Settings, and the task base that records job status.

With REDIS_URL: Redis is broker and result backend. Without it: kombu's filesystem
transport under DATA_DIR, so the embedded default still runs tasks in a separate worker
process with no server to install.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from kombu import Exchange, Queue

from app.config import Settings, get_settings

log = logging.getLogger("app.worker")

QUEUES = ("default", "sampling", "training")


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker, backend and routing for these settings."""
    conf: dict[str, Any] = {
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        "task_default_queue": "default",
        "task_acks_late": True,  # a task whose worker dies is redelivered, not lost
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "result_expires": 3600,
        # Embedded beat (`rlhf worker --beat`, used by `rlhf dev`) or a separate beat process.
        "beat_schedule": {
            "reap-stale-runs": {
                "task": "runs.reap_stale",
                "schedule": settings.reap_every_s,
                "options": {"queue": "default"},
            },
            "relay-outbox": {
                "task": "system.relay_outbox",
                "schedule": settings.outbox_relay_every_s,
                "options": {"queue": "default"},
            },
            "expire-leases": {
                "task": "labeling.expire_leases", "schedule": 300.0, "options": {"queue": "default"},
            },
            "restock-ranking-queues": {
                "task": "sampling.restock_all",
                "schedule": settings.restock_every_s,
                "options": {"queue": "default"},
            },
        },
        "beat_schedule_filename": str((settings.data_dir / "celery" / "beat-schedule").resolve()),
    }
    if settings.redis_url:
        conf.update(broker_url=settings.redis_url, result_backend=settings.redis_url)
        conf["broker_transport_options"] = {"visibility_timeout": 6 * 3600}
    else:
        folder = (settings.data_dir / "celery" / "broker").resolve()
        results = (settings.data_dir / "celery" / "results").resolve()
        control = folder.parent / "control"
        for path in (folder, results, folder.parent / "processed", control):
            path.mkdir(parents=True, exist_ok=True)
        conf.update(
            broker_url="filesystem://",
            broker_transport_options={
                "data_folder_in": str(folder),
                "data_folder_out": str(folder),
                "processed_folder": str(folder.parent / "processed"),
                # Exchange bindings; kombu's default is "control" in the current directory.
                "control_folder": str(control),
                "store_processed": False,
            },
            result_backend=f"file://{results}",
        )
    return conf


def make_celery(settings: Settings | None = None) -> Celery:
    """Build the Celery app from Settings."""
    settings = settings or get_settings()
    from app.discovery import domain_module_names

    app = Celery("rlhf", include=domain_module_names("tasks"))
    app.conf.update(celery_config(settings))
    return app


class RecordedTask(Task):
    """Base for tasks that own a database row: failures are written to that row, not only logged.

    Subclasses set `record_failure(row_id, exc)`; the task's first argument is the row id.
    """

    abstract = True

    def record_failure(self, row_id: int, exc: BaseException) -> None:
        """Write the failure onto the task's row (overridden per task)."""
        log.error("task %s failed for row %s: %s", self.name, row_id, exc)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Celery hook: record the failure on the row the task was given."""
        if args:
            try:
                self.record_failure(int(args[0]), exc)
            except Exception:  # pragma: no cover - recording must never mask the original error
                log.exception("could not record failure of %s", self.name)


celery_app = make_celery()
