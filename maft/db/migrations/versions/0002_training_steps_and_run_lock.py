"""training steps and run lock

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 15:30:03.988062
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "training_steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["training_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "name"),
    )
    with op.batch_alter_table("training_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_steps_run_id"), ["run_id"], unique=False)

    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active_lock", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_training_runs_active_lock", ["active_lock"])



def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_training_runs_active_lock", type_="unique")
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("active_lock")

    with op.batch_alter_table("training_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_steps_run_id"))

    op.drop_table("training_steps")
