"""drop training_runs.progress: nothing wrote it (a run's progress is its steps')

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_column("progress")


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=False,
                                      server_default=sa.text("'{}'")))
