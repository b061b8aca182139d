"""A metric's value may be NaN: SQLite stores NaN as NULL, so the column accepts NULL (read back as NaN).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metric") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM metric WHERE value IS NULL")
    with op.batch_alter_table("metric") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=False)
