"""Exports run as background jobs: POST /exports records a job and returns at once; the worker
writes the batch on a read-only snapshot, reporting progress; the job page polls until the end."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from app.enums import TaskKind
from app.exports import jobs, service
from app.exports.models import ExportBatch, ExportJob
from app.system.models import OutboxMessage
from tests.factories import Factory
from tests.helpers import WebClient


def _ops_client(committed_db: Any) -> tuple[WebClient, int]:
    from app.main import create_app

    f = Factory(committed_db)
    user = f.user("ops")
    queue = f.queue(TaskKind.demonstration)
    f.prompt(queue, text="Export me")
    committed_db.commit()
    web = WebClient(create_app())
    web.sign_in(user.username, f.password)
    return web, queue.id


def test_post_returns_at_once_and_the_worker_writes_the_batch(committed_db, monkeypatch) -> None:
    web, queue_id = _ops_client(committed_db)
    resp = web.post("/exports", data={"queues": [str(queue_id)], "splits": ["train", "valid", "test"]})
    assert resp.status_code == 303 and resp.headers["location"].startswith("/exports/jobs/")
    job_id = int(resp.headers["location"].rsplit("/", 1)[1])
    committed_db.expire_all()
    assert committed_db.scalar(select(ExportBatch)) is None  # nothing written in the request
    job = committed_db.get(ExportJob, job_id)
    assert job is not None and job.status == "queued"
    message = committed_db.scalar(select(OutboxMessage).where(OutboxMessage.task_name == jobs.EXPORT_TASK))
    assert message is not None and message.args == [job_id] and message.sent_at is not None
    committed_db.rollback()  # end the read (on SQLite every transaction holds the write lock)
    page = web.get(f"/exports/jobs/{job_id}")
    assert 'id="export-job-status">queued' in page.text and 'hx-trigger="every 1s"' in page.text

    reports: list[float] = []
    real = jobs._report
    monkeypatch.setattr(jobs, "_report", lambda jid, f: (reports.append(f), real(jid, f)))
    from app.exports.tasks import write_batch

    batch_id = write_batch(job_id)
    assert batch_id is not None and reports == [0.3, 0.8, 0.95]
    assert write_batch(job_id) is None  # a duplicate message finds the job done
    live = web.get(f"/exports/jobs/{job_id}?part=live", headers={"HX-Request": "true"})
    assert live.headers["HX-Redirect"] == f"/exports/{batch_id}" and "hx-trigger" not in live.text
    manifest = web.get(f"/exports/{batch_id}/files/manifest.json").json()
    assert manifest["counts"]["prompts"] == 1 and manifest["filters"]["queues"] == [queue_id]
    rows = web.get(f"/exports/{batch_id}/files/prompts.jsonl").text.splitlines()
    assert json.loads(rows[0])["prompt"] == "Export me"
    assert web.get(f"/exports/{batch_id}/files/..%2Fsecret").status_code == 404
    tar = web.get(f"/exports/{batch_id}/download")
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"
    assert web.post("/exports", data={"exclude_flags": ["bogus"]}).status_code == 400


def test_a_failed_export_says_why_on_its_page(committed_db, monkeypatch) -> None:
    web, _ = _ops_client(committed_db)
    job_id = int(web.post("/exports", data={}).headers["location"].rsplit("/", 1)[1])

    def broken(*_: Any, **__: Any) -> dict[str, int]:
        raise OSError("disk full")

    monkeypatch.setattr(service, "write_files", broken)
    with pytest.raises(OSError, match="disk full"):
        jobs.run_export(job_id)
    page = web.get(f"/exports/jobs/{job_id}").text
    assert "failed" in page and "disk full" in page and "hx-trigger" not in page
