"""Fair share between owners: a job's priority within its owner, the start of its latest attempt (the claim
orders owners by the most recent of these), and the request id of the POST that queued it.

`started_at` now keeps the first attempt's start; `attempt_started_at` is the latest attempt's. Before this
migration each claim overwrote `started_at`, so a job that was resumed has lost its first start: it is kept
as its latest start in both columns.

`ix_job_owner_attempt_started` answers "when did this owner last start a job" with one index lookup per
owner that has jobs queued. The columns are added (and dropped) in place, never by a batch "move and copy",
which on SQLite would drop migration 0011's triggers on `job` with the old table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job", sa.Column("priority", sa.String(length=8), nullable=False, server_default="normal"))
    op.add_column("job", sa.Column("attempt_started_at", UTCDateTime(), nullable=True))
    op.add_column("job", sa.Column("request_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE job SET attempt_started_at = started_at")
    op.create_index("ix_job_owner_attempt_started", "job", ["owner", "attempt_started_at"])


def downgrade() -> None:
    op.drop_index("ix_job_owner_attempt_started", table_name="job")
    for column in ("request_id", "attempt_started_at", "priority"):
        op.drop_column("job", column)
