"""#14 (transfer): the job a job started from, and which of its checkpoints.

`parent_job_id` and `parent_checkpoint_id` are set at POST from the spec's `init_from`; the indexes find a
job's children (GET /v1/jobs?parent=, lineage, the deletion check) and the checkpoints children started from
(protected from retention and deletion). Added in place, never by a batch "move and copy", which on SQLite
would drop migration 0011's triggers on `job` with the old table.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job", sa.Column("parent_job_id", sa.String(length=36), nullable=True))
    op.add_column("job", sa.Column("parent_checkpoint_id", sa.Integer(), nullable=True))
    op.create_index("ix_job_parent", "job", ["parent_job_id"])
    op.create_index("ix_job_parent_checkpoint", "job", ["parent_checkpoint_id"])


def downgrade() -> None:
    op.drop_index("ix_job_parent_checkpoint", table_name="job")
    op.drop_index("ix_job_parent", table_name="job")
    op.drop_column("job", "parent_checkpoint_id")
    op.drop_column("job", "parent_job_id")
