"""#16 (many hosts): the host that ran a job.

`worker_host` is set by each claim to the hostname of the training process's machine (a container's
hostname under docker), so a job shows where its latest attempt ran. Added in place (no batch copy, which
on SQLite would drop migration 0011's triggers on `job`).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job", sa.Column("worker_host", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "worker_host")
