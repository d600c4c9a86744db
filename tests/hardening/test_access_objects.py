"""Object-level access: a labeler cannot read or write another labeler's assignment by its id."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling import service
from app.labeling.models import Assignment
from app.rankings.models import Ranking
from app.rankings.service import letter
from app.routing import api_routes

ASSIGNMENT_ROUTE = re.compile(r"^/label/a/\{assignment_id\}")
CONVERTOR = re.compile(r"\{(\w+):\w+\}")  # "{assignment_id:int}" -> "{assignment_id}"


def _assignment_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    routes = []
    for route in api_routes(app):
        path = CONVERTOR.sub(r"{\1}", getattr(route, "path", ""))
        if ASSIGNMENT_ROUTE.match(path):
            routes += [(m, path) for m in sorted(route.methods - {"HEAD"})]
    return routes


def _full_form(a: Assignment) -> dict[str, str | list[str]]:
    form: dict[str, str | list[str]] = {"text": "I am not the owner", "reason": "Other", "detail": "x",
                                        "discard_draft": "1", "comment": "hi"}
    for i, cid in enumerate(letter(j) for j in range(len(a.display_order))):
        form[f"tier_{cid}"] = str(i + 1)
        form[f"likert_{cid}"] = "4"
    return form


@pytest.mark.parametrize("kind", [TaskKind.ranking, TaskKind.demonstration])
def test_every_assignment_route_refuses_another_labelers_assignment(login, db, factory, app, kind) -> None:
    owner, intruder = login("labeler"), login("labeler")
    q = factory.queue(kind, overlap=2)
    factory.task(q)
    a = service.next_task(db, owner.user, q.id)
    assert a is not None
    db.commit()
    before = (a.status, a.lease_expires_at.replace(tzinfo=None), a.draft_text)  # SQLite stores naive UTC
    routes = _assignment_routes(app)
    # every action on an assignment: page, renew, draft, skip, prompt, ranking, demonstration
    assert {p for _, p in routes} >= {
        "/label/a/{assignment_id}", "/label/a/{assignment_id}/ranking",
        "/label/a/{assignment_id}/demonstration", "/label/a/{assignment_id}/skip",
        "/label/a/{assignment_id}/renew", "/label/a/{assignment_id}/draft",
    }
    for method, path in routes:
        url = path.replace("{assignment_id}", str(a.id))
        resp = intruder.request(method, url, data=_full_form(a) if method == "POST" else None)
        assert resp.status_code == 404, (method, url, resp.status_code)
        assert "not yours" in resp.text, (method, url)
        assert "Completion 0 of task" not in resp.text and q.name not in resp.text
    db.refresh(a)
    assert (a.status, a.lease_expires_at.replace(tzinfo=None), a.draft_text) == before
    assert db.scalar(select(func.count(Ranking.id)).where(Ranking.assignment_id == a.id)) == 0
    assert db.scalar(select(func.count(Demonstration.id)).where(Demonstration.assignment_id == a.id)) == 0
    # the owner still can
    assert owner.get(f"/label/a/{a.id}").status_code == 200
