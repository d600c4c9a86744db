"""Migration 0005 backfills the agreement counters from the rankings already stored."""

from __future__ import annotations

import random

from alembic import command
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.auth.models import User
from app.enums import TaskKind
from app.labeling.models import Task
from app.quality import counters, service
from app.rankings.models import Ranking, RankingEntry
from tests.admin.builders import assignment, demonstration
from tests.db.test_migrations import _run, scratch_engine  # noqa: F401 - the fixture
from tests.factories import Factory


def test_upgrade_to_0005_counts_existing_rankings(scratch_engine: Engine) -> None:  # noqa: F811
    _run(scratch_engine, command.upgrade, "0004")
    added = _add_later_columns(scratch_engine)
    rng = random.Random(3)
    with Session(scratch_engine) as db:
        f = Factory(db)
        queue, demos = f.queue(TaskKind.ranking, k=4, overlap=3), f.queue(TaskKind.demonstration)
        people = [f.user() for _ in range(4)]
        for _ in range(6):
            task = f.task(queue)
            comps = task_completions(db, task.id)
            for user in rng.sample(people, 3):
                a = assignment(db, task, user)
                db.add(Ranking(assignment_id=a.id, task_id=task.id, user_id=user.id, entries=[
                    RankingEntry(completion_id=c, tier=rng.randint(1, 4)) for c in comps]))
        db.flush()
        with_demo = f.task(demos)
        db.commit()
        queue_id, demo_task_id, first_user = queue.id, with_demo.id, people[0].id
    _drop_columns(scratch_engine, added)
    _run(scratch_engine, command.upgrade, "head")
    with Session(scratch_engine) as db:
        total, per_user = counters.queue_agreement(db, queue_id)
        fresh, fresh_users = service.agreement(db, queue_id)
        expected = (6, fresh.agree, fresh.compared, len(fresh.taus))
        assert (total.items, total.agree, total.compared, total.tau_n) == expected
        assert total.tau == fresh.tau or abs((total.tau or 0) - (fresh.tau or 0)) < 1e-9
        assert {u: (a.agree, a.compared) for u, a in per_user.items()} == {
            u: (a.agree, a.compared) for u, a in fresh_users.items()}
        user = db.get(User, first_user)
        demonstration(db, db.get(Task, demo_task_id), user, "an answer")  # the app counts on from there
        ranked = db.query(Ranking).filter_by(user_id=first_user).count()
        assert counters.labels_per_user(db)[first_user] == 1 + ranked


def task_completions(db: Session, task_id: int) -> list[int]:
    """The completion ids of a task, by position."""
    from sqlalchemy import select

    from app.rankings.models import Completion

    ids = select(Completion.id).where(Completion.task_id == task_id).order_by(Completion.position)
    return list(db.scalars(ids))


def _add_later_columns(engine: Engine) -> list[tuple[str, str]]:
    """Nullable stand-ins for the columns later migrations add to tables that exist now: the ORM
    writes every mapped column (NULL when unset), so the data of an old revision needs them."""
    from sqlalchemy import inspect, text

    from app.db import Base

    insp, added = inspect(engine), []
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            if not insp.has_table(table.name):
                continue
            present = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name not in present:
                    kind = col.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}'))
                    added.append((table.name, col.name))
    return added


def _drop_columns(engine: Engine, columns: list[tuple[str, str]]) -> None:
    """Drop the stand-ins again, so the later migrations add the real columns."""
    from sqlalchemy import text

    with engine.begin() as conn:
        for table, column in columns:
            conn.execute(text(f'ALTER TABLE {table} DROP COLUMN "{column}"'))
