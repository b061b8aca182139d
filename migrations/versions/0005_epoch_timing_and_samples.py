"""The latest epoch's duration and throughput (for /metrics) and a generative job's latest samples.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("epoch_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("samples_per_second", sa.Float(), nullable=True))
        batch.add_column(sa.Column("latest_samples", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("latest_samples")
        batch.drop_column("samples_per_second")
        batch.drop_column("epoch_seconds")
