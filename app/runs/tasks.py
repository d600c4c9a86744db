"""Celery tasks of training rounds: ids in, work recorded on the run row."""

from __future__ import annotations

from app.db import session_scope
from app.runs import service
from app.worker import RecordedTask, celery_app


class RoundTask(RecordedTask):
    """A round whose task itself crashed (not the stages) is marked failed on its row."""

    def record_failure(self, row_id: int, exc: BaseException) -> None:
        """Mark the run failed with the error."""
        with session_scope() as db:
            run = service.get_run(db, row_id, lock=True)
            if run.status not in service.TERMINAL:
                service.fail_run(db, run, f"{type(exc).__name__}: {exc}", run.current_stage)


@celery_app.task(name="runs.run_round", base=RoundTask, acks_late=True)
def run_round(run_id: int) -> None:
    """Run a training round (queue `training`)."""
    from app.runs.executor import execute_round

    execute_round(run_id)


@celery_app.task(name="runs.reap_stale")
def reap_stale() -> list[int]:
    """Mark rounds whose worker died as failed (scheduled every 30 s by beat)."""
    with session_scope() as db:
        return service.reap_stale_runs(db)
