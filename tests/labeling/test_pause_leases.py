"""Pausing stops leases already handed out, and a task page view never writes."""

from __future__ import annotations

import pytest

from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling import service
from tests.helpers import expired_demonstration_lease, sql_statements, take_task


@pytest.mark.parametrize("who", ["labeler", "queue"])
def test_a_pause_stops_submits_drafts_and_renewals_through_an_old_task_url(login, factory, db, who) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
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
    web, aid, _ = expired_demonstration_lease(login, factory, db)
    web.user.is_paused = True
    db.flush()
    assert web.post(f"/label/a/{aid}/demonstration", data={"text": "late"}).status_code == 409
    assert db.query(Demonstration).filter_by(assignment_id=aid).count() == 0


def test_viewing_a_task_page_writes_nothing_even_with_an_expired_lease(login, factory, db) -> None:
    web, aid, a = expired_demonstration_lease(login, factory, db)
    with sql_statements() as seen:
        page = web.get(f"/label/a/{aid}")
    writes = [sql for sql in seen if sql.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert page.status_code == 200 and seen and writes == []  # the page's reads were seen, no write
    # The page revives its lease by POST as soon as it loads (and on every submit).
    assert 'hx-trigger="load, every' in page.text
    assert web.post(f"/label/a/{aid}/renew").status_code == 200
    db.refresh(a)
    assert service.lease_is_live(a)
