"""'Next task' in one queue takes the hot path (app.labeling.fast.take_next): the lease it makes
is the one the service makes, the lease held comes back in one statement, and what the hot
path does not handle (gold, a paused labeler, an empty queue) still gets the service's answer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.config import get_settings
from app.enums import TaskKind
from app.labeling.models import Assignment
from tests.helpers import sql_statements


def _take(web: Any, queue_id: int) -> tuple[Any, list[str]]:
    with sql_statements() as seen:
        r = web.post("/label/next", data={"queue_id": str(queue_id)})
    return r, list(seen)


def _lease(db: Any, r: Any) -> tuple[Any, ...]:
    assert r.status_code == 303 and r.headers["location"].startswith("/label/a/"), r.text
    db.expire_all()
    a = db.get(Assignment, int(r.headers["location"].rsplit("/", 1)[1]))
    live = a.lease_expires_at > a.leased_at
    return (a.status, a.task_id, sorted(a.display_order), a.guideline_version_id, live)


def test_next_task_on_the_hot_path_leases_as_the_service_does(db, factory, login, monkeypatch) -> None:
    pg = db.get_bind().dialect.name == "postgresql"
    q = factory.queue(TaskKind.ranking, overlap=2)
    factory.task(q)
    web, other = login("labeler"), login("labeler")
    db.commit()
    hot, hot_sql = _take(web, q.id)
    again, again_sql = _take(web, q.id)  # the lease held comes back
    assert again.headers["location"] == hot.headers["location"]
    monkeypatch.setattr(get_settings(), "web_hot_path", False)
    slow, slow_sql = _take(other, q.id)
    got, want = _lease(db, hot), _lease(db, slow)
    assert got == want and got[0] == "leased" and len(got[2]) == q.k
    # The user, the held lease and the queue in one statement; the lease in three more; the
    # ranking queue's restock check through the sampling service.
    assert len(again_sql) <= (1 if pg else 2), again_sql
    assert len(hot_sql) < len(slow_sql), (hot_sql, slow_sql)


def test_what_the_hot_path_leaves_to_the_service(db, factory, login) -> None:
    q = factory.queue(TaskKind.demonstration)
    web = login("labeler")
    db.commit()
    r, _ = _take(web, q.id)  # nothing to take: the service's message
    assert r.status_code == 303 and r.headers["location"] == "/label"
    assert "no task for you" in web.get("/label").text
    factory.task(q)
    web.user.is_paused = True
    db.commit()
    r, _ = _take(web, q.id)
    assert r.status_code == 403 and "paused" in r.text
    assert db.scalars(select(Assignment)).all() == []
