"""runs record their method; stage names are no longer a fixed list

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("method", sa.String(length=32), server_default="instructgpt", nullable=False)
        )
    # Stage names come from app/runs/stages.py; adding a stage must not need a migration.
    with op.batch_alter_table("run_stages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_run_stages_name_known"), type_="check")


def downgrade() -> None:
    # Stages outside the original four (DPO) cannot satisfy the old constraint: their rows go.
    op.execute("DELETE FROM run_stages WHERE name NOT IN ('sft', 'reward', 'ppo', 'evaluate')")
    with op.batch_alter_table("run_stages", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_run_stages_name_known"), "name IN ('sft', 'reward', 'ppo', 'evaluate')"
        )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_column("method")
