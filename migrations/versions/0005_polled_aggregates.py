"""Polled pages: agreement counters per queue and per labeler (backfilled), latest-labels and recent-labels indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 07:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.quality.metrics import task_counts

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("items", "agree", "compared", "tau_sum", "tau_n")


def _counter_columns() -> list[sa.Column]:
    return [
        sa.Column('items', sa.Integer(), nullable=False),
        sa.Column('agree', sa.Integer(), nullable=False),
        sa.Column('compared', sa.Integer(), nullable=False),
        sa.Column('tau_sum', sa.Float(), nullable=False),
        sa.Column('tau_n', sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table('queue_agreement',
    sa.Column('queue_id', sa.Integer(), nullable=False),
    *_counter_columns(),
    sa.ForeignKeyConstraint(['queue_id'], ['prompt_queues.id'], name=op.f('fk_queue_agreement_queue_id_prompt_queues'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('queue_id', name=op.f('pk_queue_agreement'))
    )
    op.create_table('labeler_agreement',
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('labels', sa.Integer(), nullable=False),
    *_counter_columns(),
    sa.ForeignKeyConstraint(['queue_id'], ['prompt_queues.id'], name=op.f('fk_labeler_agreement_queue_id_prompt_queues'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_labeler_agreement_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('queue_id', 'user_id', name=op.f('pk_labeler_agreement'))
    )
    with op.batch_alter_table('rankings', schema=None) as batch_op:
        batch_op.create_index('ix_rankings_user_id_id', ['user_id', 'id'], unique=False)
    with op.batch_alter_table('demonstrations', schema=None) as batch_op:
        batch_op.create_index('ix_demonstrations_user_id_id', ['user_id', 'id'], unique=False)
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.create_index('ix_assignments_status_finished', ['status', 'finished_at'], unique=False)
    _backfill()


def _backfill() -> None:
    """Counters for the rankings stored before this revision (the same sums the app keeps per submit)."""
    rows = op.get_bind().execute(sa.text(
        "SELECT t.queue_id, r.task_id, r.id, r.user_id, e.completion_id, e.tier FROM rankings r "
        "JOIN tasks t ON t.id = r.task_id JOIN ranking_entries e ON e.ranking_id = r.id "
        "ORDER BY r.task_id, r.id"
    ))
    tasks: dict[int, tuple[int, dict[int, tuple[int, dict[int, int]]]]] = {}
    for queue_id, task_id, rid, uid, cid, tier in rows:
        tasks.setdefault(task_id, (queue_id, {}))[1].setdefault(rid, (uid, {}))[1][cid] = tier
    sums: dict[tuple[int, int | None], list[float]] = {}
    for queue_id, by_ranking in tasks.values():
        for key, counts in task_counts(list(by_ranking.values())).items():
            acc = sums.setdefault((queue_id, key), [0.0] * 6)
            for i, c in enumerate(counts):
                acc[i] += c
    for model in ("rankings", "demonstrations"):
        labels = op.get_bind().execute(sa.text(
            f"SELECT t.queue_id, x.user_id, count(*) FROM {model} x JOIN tasks t ON t.id = x.task_id "  # noqa: S608
            "GROUP BY t.queue_id, x.user_id"
        ))
        for queue_id, user_id, n in labels:
            acc = sums.setdefault((queue_id, user_id), [0.0] * 6)
            acc[5] += n
    queue_t = sa.table('queue_agreement', sa.column('queue_id'), *(sa.column(c) for c in COLUMNS))
    labeler_t = sa.table('labeler_agreement', sa.column('queue_id'), sa.column('user_id'), sa.column('labels'),
                         *(sa.column(c) for c in COLUMNS))

    def values(acc: list[float]) -> dict[str, float | int]:
        return {c: float(v) if c == "tau_sum" else int(v) for c, v in zip(COLUMNS, acc[:5], strict=True)}

    queues = [{"queue_id": q, **values(a)} for (q, u), a in sums.items() if u is None]
    labelers = [{"queue_id": q, "user_id": u, "labels": int(a[5]), **values(a)}
                for (q, u), a in sums.items() if u is not None]
    if queues:
        op.bulk_insert(queue_t, queues)
    if labelers:
        op.bulk_insert(labeler_t, labelers)


def downgrade() -> None:
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_assignments_status_finished')
    with op.batch_alter_table('demonstrations', schema=None) as batch_op:
        batch_op.drop_index('ix_demonstrations_user_id_id')
    with op.batch_alter_table('rankings', schema=None) as batch_op:
        batch_op.drop_index('ix_rankings_user_id_id')
    op.drop_table('labeler_agreement')
    op.drop_table('queue_agreement')
