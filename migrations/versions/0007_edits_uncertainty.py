"""Edits of the best completion (completion_edits), queue settings allow_edits and task_order,
and each ranking task's reward-model uncertainty

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('completion_edits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ranking_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('completion_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('guideline_version_id', sa.Integer(), nullable=True),
    sa.Column('time_spent_ms', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['completion_id'], ['completions.id'], name=op.f('fk_completion_edits_completion_id_completions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['guideline_version_id'], ['guideline_versions.id'], name=op.f('fk_completion_edits_guideline_version_id_guideline_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_completion_edits_prompt_id_prompts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ranking_id'], ['rankings.id'], name=op.f('fk_completion_edits_ranking_id_rankings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_completion_edits_task_id_tasks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_completion_edits_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_completion_edits')),
    sa.UniqueConstraint('ranking_id', name=op.f('uq_completion_edits_ranking_id'))
    )
    with op.batch_alter_table('completion_edits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_completion_edits_completion_id'), ['completion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_completion_edits_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_completion_edits_prompt_id'), ['prompt_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_completion_edits_task_id'), ['task_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_completion_edits_user_id'), ['user_id'], unique=False)
    with op.batch_alter_table('prompt_queues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allow_edits', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.add_column(sa.Column('task_order', sa.String(length=16), server_default='oldest', nullable=False))
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uncertainty', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('scored_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tasks_scored_by_id_model_versions'), 'model_versions', ['scored_by_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tasks_scored_by_id_model_versions'), type_='foreignkey')
        batch_op.drop_column('scored_by_id')
        batch_op.drop_column('uncertainty')
    with op.batch_alter_table('prompt_queues', schema=None) as batch_op:
        batch_op.drop_column('task_order')
        batch_op.drop_column('allow_edits')
    op.drop_table('completion_edits')
