"""Checkpoint bytes stored out of line without compression (PostgreSQL).

A checkpoint is mostly float tensors, which pglz cannot shrink; by default PostgreSQL still tries on every
insert, on the worker's critical path (a small network with checkpoint_every 1 trained about 1.8× slower).
SQLite does not compress, so it has nothing to change.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE checkpoint ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE checkpoint ALTER COLUMN data SET STORAGE EXTENDED")
