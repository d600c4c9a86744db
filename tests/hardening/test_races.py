"""Races between two requests, on real transactions: a skip waiting behind a submit of the same
assignment, and a double-clicked Rollback. The second request must see what the first committed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db import session_factory
from app.demonstrations.service import submit_demonstration
from app.enums import AssignmentStatus, TaskKind
from app.errors import Conflict
from app.labeling import service as labeling
from app.labeling.models import Assignment
from app.policies import service as registry
from app.policies.models import Deployment
from tests.factories import Factory


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run fn(session) in its own session and thread; the outcome (result or error) lands in a list."""
    out: list[Any] = []

    def work() -> None:
        with session_factory()() as session:
            try:
                out.append(fn(session))
                session.commit()
            except Exception as exc:
                session.rollback()
                out.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    return thread, out


def test_a_skip_waiting_behind_a_submit_does_not_overwrite_it(committed_db) -> None:
    f = Factory(committed_db)
    q = f.queue(TaskKind.demonstration)
    f.task(q)
    user = f.user()
    a = labeling.next_task(committed_db, user)
    assert a is not None
    aid, uid = a.id, user.id
    committed_db.commit()

    with session_factory()() as submitter:
        # The submit holds the task and assignment locks until its commit.
        submit_demonstration(submitter, submitter.get(type(user), uid), aid, "the stored label")
        thread, out = _in_thread(
            lambda s: labeling.skip(s, s.get(type(user), uid), aid, "too hard", discard_draft=True))
        time.sleep(1.0)  # the skip reads and then waits for the task lock
        submitter.commit()
    thread.join(30)
    assert len(out) == 1 and isinstance(out[0], Conflict) and "already submitted" in str(out[0])
    committed_db.expire_all()
    assert committed_db.get(Assignment, aid).status == AssignmentStatus.submitted.value  # type: ignore[union-attr]


def _policy_dir(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"kind": "policy", "metrics": {}}))
    return d


def test_a_double_clicked_rollback_rolls_back_once_and_keeps_the_chain(committed_db, tmp_path: Path) -> None:
    versions = [registry.register_version(committed_db, name=f"race-{n}", kind="policy",
                                          path=_policy_dir(tmp_path, f"race-{n}")) for n in range(3)]
    for v in versions:
        registry.deploy(committed_db, v.id)
    current = versions[-1].id
    committed_db.commit()

    with session_factory()() as first:
        registry.rollback(first, expected_current_id=current)  # holds the deployed row's lock
        thread, out = _in_thread(lambda s: registry.rollback(s, expected_current_id=current).id)
        time.sleep(1.0)
        first.commit()
    thread.join(30)
    assert len(out) == 1 and isinstance(out[0], Conflict), out
    committed_db.expire_all()
    assert registry.deployed_policy(committed_db).id == versions[1].id  # type: ignore[union-attr]
    history = committed_db.scalars(select(Deployment).order_by(Deployment.id)).all()
    assert [d.previous_version_id for d in history][1:] == [versions[0].id, versions[1].id, versions[2].id]


def test_a_rollback_racing_without_the_page_state_still_keeps_the_chain(committed_db, tmp_path: Path) -> None:
    versions = [registry.register_version(committed_db, name=f"chain-{n}", kind="policy",
                                          path=_policy_dir(tmp_path, f"chain-{n}")) for n in range(3)]
    for v in versions:
        registry.deploy(committed_db, v.id)
    committed_db.commit()
    with session_factory()() as first:
        registry.rollback(first)
        thread, out = _in_thread(lambda s: registry.rollback(s).previous_version_id)
        time.sleep(1.0)
        first.commit()
    thread.join(30)
    if isinstance(out[0], Exception):
        pytest.fail(f"second rollback failed: {out[0]!r}")
    assert out == [versions[1].id]  # it replaced what the first rollback deployed, never "nothing"
