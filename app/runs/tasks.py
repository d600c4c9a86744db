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

    try:
        execute_round(run_id)
    except (SystemExit, KeyboardInterrupt):
        # The worker is shutting down (its pool process got the terminate signal): say so on the
        # run at once, in the stage it was in, so Resume continues it; a redelivery then does nothing.
        stopped(run_id)
        raise


def stopped(run_id: int) -> None:
    """Mark a round whose worker was stopped mid-stage as failed there (resumable)."""
    with session_scope() as db:
        run = service.get_run(db, run_id, lock=True)
        if run.status not in service.TERMINAL:
            why = "the worker was stopped while this ran; Resume continues from the last completed stage"
            service.fail_run(db, run, why, run.current_stage)


@celery_app.task(name="runs.reap_stale")
def reap_stale() -> list[int]:
    """Mark rounds whose worker died as failed (scheduled every 30 s by beat)."""
    with session_scope() as db:
        return service.reap_stale_runs(db)
