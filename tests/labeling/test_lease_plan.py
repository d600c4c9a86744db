"""The lease's candidate query reads the task's prompt by its key, whatever the prompt count."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from app.auth.models import User
from app.db import get_engine, session_factory, utcnow
from app.enums import TaskKind
from app.labeling import hotpath, service
from app.labeling.models import Task
from app.prompts.models import Prompt
from tests.factories import Factory


def test_a_lease_reads_the_task_prompt_by_its_key_not_by_a_scan(committed_db) -> None:
    """The candidate query outer-joins the task's prompt: written as EXISTS inside the eligibility
    OR, PostgreSQL ran it as a hashed subplan that read every prompt on every lease (3.5 ms of a
    6.8 ms query at 10 000 prompts, found with EXPLAIN ANALYZE on the web benchmark's database)."""
    if committed_db.get_bind().dialect.name != "postgresql":
        pytest.skip("a PostgreSQL plan")
    f = Factory(committed_db)
    q = f.queue(TaskKind.demonstration)
    user = f.user()
    committed_db.flush()
    ids = committed_db.scalars(insert(Prompt).returning(Prompt.id), [
        {"queue_id": q.id, "text": f"Prompt {i}?", "pii_status": "clear"} for i in range(3000)
    ]).all()
    committed_db.execute(insert(Task), [{"queue_id": q.id, "kind": "demonstration", "prompt_id": pid}
                                        for pid in ids])
    committed_db.commit()
    with get_engine().connect() as conn:
        conn.execute(text("ANALYZE prompts"))
        conn.execute(text("ANALYZE tasks"))
        conn.commit()
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "FOR UPDATE" in statement and "prompts" in statement:
            seen.append((statement, parameters))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        db = session_factory()()
        try:
            mine = db.get(User, user.id)
            assert mine is not None
            assert service.next_task(db, mine, q.id) is not None  # the services' candidate
            db.rollback()
        finally:
            db.close()
        with engine.connect() as conn, conn.begin():
            assert hotpath.lease_next(conn, user.id, q.id, utcnow(), 600) is not None  # the hot path's
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == 2
    for statement, parameters in seen:
        with engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        plan = plan if isinstance(plan, list) else json.loads(plan)
        nodes, scans = [plan[0]["Plan"]], []
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", []))
            if node.get("Relation Name") == "prompts":
                scans.append(node["Node Type"])
        assert scans and "Seq Scan" not in scans, scans
