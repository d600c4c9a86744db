"""The export job task (queue `default`): the job id in, the batch and the job's end on its row."""

from __future__ import annotations

from app.exports import jobs
from app.worker import celery_app


@celery_app.task(name=jobs.EXPORT_TASK, acks_late=True)
def write_batch(job_id: int) -> int | None:
    """Write the export batch of one job."""
    return jobs.run_export(job_id)
