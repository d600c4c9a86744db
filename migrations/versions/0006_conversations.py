"""Conversations: prompts.messages, a nullable JSON list of {role, content} turns

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing prompts stay plain prompts, nothing is rewritten.
    # A plain ADD/DROP COLUMN on both databases (SQLite >= 3.35 drops columns in place), so the
    # prompts table and its partial unique index are never rebuilt.
    op.add_column('prompts', sa.Column('messages', sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column('prompts', 'messages')
