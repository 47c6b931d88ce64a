"""debates by API key: an index for listing one key's debates (ownership)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 16:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("debates", schema=None) as batch_op:
        batch_op.create_index("ix_debates_api_key_created", ["api_key_id", "created_at"])


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("debates", schema=None) as batch_op:
        batch_op.drop_index("ix_debates_api_key_created")
