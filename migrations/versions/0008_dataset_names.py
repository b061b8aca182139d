"""Uploaded datasets get a name and a description; uploads are found by content (owner, sha256).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dataset") as batch:
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
    op.create_index("ix_dataset_owner_sha256", "dataset", ["owner", "sha256"])


def downgrade() -> None:
    op.drop_index("ix_dataset_owner_sha256", table_name="dataset")
    with op.batch_alter_table("dataset") as batch:
        batch.drop_column("description")
        batch.drop_column("name")
