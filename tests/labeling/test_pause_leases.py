"""Pausing stops leases already handed out, and a task page view never writes."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from app.db import utcnow
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling import service
from app.labeling.models import Assignment


def _take(web: Any) -> int:
    resp = web.post("/label/next", data={})
    assert resp.status_code == 303, resp.text[:300]
    m = re.match(r"/label/a/(\d+)$", resp.headers["location"])
    assert m
    return int(m.group(1))


@pytest.mark.parametrize("who", ["labeler", "queue"])
def test_a_pause_stops_submits_drafts_and_renewals_through_an_old_task_url(login, factory, db, who) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = _take(web)
    if who == "labeler":
        web.user.is_paused = True
    else:
        q.is_paused = True
    db.flush()
    resp = web.post(f"/label/a/{aid}/demonstration", data={"text": "written after the pause"})
    assert resp.status_code == 409 and "paused" in resp.text and "written after the pause" in resp.text
    assert db.query(Demonstration).filter_by(assignment_id=aid).count() == 0
    assert web.post(f"/label/a/{aid}/renew").status_code == 409
    assert web.post(f"/label/a/{aid}/draft", data={"text": "draft"}).status_code == 409
    assert "paused" in web.get(f"/label/a/{aid}").text


def test_a_paused_labeler_cannot_revive_an_expired_lease(login, factory, db) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = _take(web)
    a = db.get(Assignment, aid)
    assert a is not None
    a.lease_expires_at = utcnow() - timedelta(seconds=1)
    web.user.is_paused = True
    db.flush()
    assert web.post(f"/label/a/{aid}/demonstration", data={"text": "late"}).status_code == 409
    assert db.query(Demonstration).filter_by(assignment_id=aid).count() == 0


def test_viewing_a_task_page_writes_nothing_even_with_an_expired_lease(login, factory, db) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = _take(web)
    a = db.get(Assignment, aid)
    assert a is not None
    a.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    writes: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(sql)

    connection = db.connection()
    event.listen(connection, "before_cursor_execute", statement)
    try:
        page = web.get(f"/label/a/{aid}")
    finally:
        event.remove(connection, "before_cursor_execute", statement)
    assert page.status_code == 200 and writes == []
    # The page revives its lease by POST as soon as it loads (and on every submit).
    assert 'hx-trigger="load, every' in page.text
    assert web.post(f"/label/a/{aid}/renew").status_code == 200
    db.refresh(a)
    assert service.lease_is_live(a)
