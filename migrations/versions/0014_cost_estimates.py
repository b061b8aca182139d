"""#17 (bounds): a job's estimated cost per step and memory (models/cost.py), made before it queued; null for
the jobs queued before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place (never a batch "move and copy", which on SQLite would drop 0011's triggers on `job`).
    op.add_column("job", sa.Column("estimated_step_flops", sa.BigInteger(), nullable=True))
    op.add_column("job", sa.Column("estimated_memory_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for column in ("estimated_memory_bytes", "estimated_step_flops"):
        op.drop_column("job", column)
