"""curation outcomes: what each training run made of each debate and agent response

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "curation_outcomes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("debate_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("agent_index", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("label_source", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["training_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["debate_id"], ["debates.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("curation_outcomes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_curation_outcomes_run_id"), ["run_id"])
        batch_op.create_index(batch_op.f("ix_curation_outcomes_debate_id"), ["debate_id"])


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("curation_outcomes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curation_outcomes_debate_id"))
        batch_op.drop_index(batch_op.f("ix_curation_outcomes_run_id"))
    op.drop_table("curation_outcomes")
