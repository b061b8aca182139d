"""#13 (sweeps): sweeps, and a job's sweep, trial number and trial parameters.

The job's new columns are added in place, never by a batch "move and copy", which on SQLite would drop
migration 0011's triggers on `job` with the old table. Each trial number of a sweep is queued once: a unique
index on (sweep_id, trial_number), which both databases create in place. Optuna's own tables are not here:
they live in their own PostgreSQL schema or SQLite file (workers/sweep_study.py), apart from this history.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.base import UTCDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweep",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("objective", sa.JSON(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("parallel", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("told", sa.Integer(), nullable=False),
        sa.Column("driven_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep")),
    )
    op.create_index("ix_sweep_owner_created", "sweep", ["owner", "created_at", "id"])
    op.create_index("ix_sweep_status", "sweep", ["status"])
    op.add_column("job", sa.Column("sweep_id", sa.String(length=36), nullable=True))
    op.add_column("job", sa.Column("trial_number", sa.Integer(), nullable=True))
    op.add_column("job", sa.Column("trial_params", sa.JSON(), nullable=True))
    op.create_index("uq_job_sweep_trial", "job", ["sweep_id", "trial_number"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_job_sweep_trial", table_name="job")
    for column in ("trial_params", "trial_number", "sweep_id"):
        op.drop_column("job", column)
    op.drop_index("ix_sweep_status", table_name="sweep")
    op.drop_index("ix_sweep_owner_created", table_name="sweep")
    op.drop_table("sweep")
