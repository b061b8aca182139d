"""Per-block extremes of every metric series, kept by PostgreSQL itself.

A downsampled read of a 100k-point series scanned and ranked every row (~0.25 s). `metric_block` holds, per
32 steps of a series, the count and the lowest and highest point (ties: the earlier step); statement-level
triggers with transition tables keep it for every writer (the worker's COPY, INSERTs, the resume's DELETE),
one aggregate per statement. SQLite gets the table but no triggers: its reads keep the window query.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BLOCK_STEPS = 32  # app.db.tables.METRIC_BLOCK_STEPS

# The blocks of `{rows}` (a relation with job_id, name, step, value). PostgreSQL orders NaN above every
# number, in ORDER BY, LEAST/GREATEST and row comparisons alike, so a block's extremes agree with a sort.
BLOCK = f"(step - 1) / {BLOCK_STEPS} AS block"
BLOCKS_OF = f"""
    SELECT lo.job_id, lo.name, lo.block, c.n, lo.step, lo.value, hi.step, hi.value
    FROM (SELECT DISTINCT ON (job_id, name, block) job_id, name, {BLOCK}, step, value
          FROM {{rows}} ORDER BY job_id, name, block, value, step) AS lo
    JOIN (SELECT DISTINCT ON (job_id, name, block) job_id, name, {BLOCK}, step, value
          FROM {{rows}} ORDER BY job_id, name, block, value DESC, step) AS hi USING (job_id, name, block)
    JOIN (SELECT job_id, name, {BLOCK}, count(*) AS n
          FROM {{rows}} GROUP BY 1, 2, 3) AS c USING (job_id, name, block)
"""
COLUMNS = "(job_id, name, block, n, lo_step, lo_value, hi_step, hi_value)"

AFTER_INSERT = f"""
CREATE FUNCTION metric_block_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO metric_block AS b {COLUMNS}
    {BLOCKS_OF.format(rows="new_rows")}
    ON CONFLICT (job_id, name, block) DO UPDATE SET
        n = b.n + excluded.n,
        lo_step = CASE WHEN (excluded.lo_value, excluded.lo_step) < (b.lo_value, b.lo_step)
                       THEN excluded.lo_step ELSE b.lo_step END,
        lo_value = LEAST(b.lo_value, excluded.lo_value),
        hi_step = CASE WHEN excluded.hi_value > b.hi_value
                         OR (excluded.hi_value = b.hi_value AND excluded.hi_step < b.hi_step)
                       THEN excluded.hi_step ELSE b.hi_step END,
        hi_value = GREATEST(b.hi_value, excluded.hi_value);
    RETURN NULL;
END $$
"""

# A deletion (a resumed attempt's, or a job's cascade) summarises the touched blocks again from what is left.
TOUCHED = f"(SELECT DISTINCT job_id, name, {BLOCK} FROM old_rows)"
KEPT = f"""(SELECT m.job_id, m.name, m.step, m.value FROM metric AS m JOIN {TOUCHED} AS t
            ON m.job_id = t.job_id AND m.name = t.name
           AND m.step BETWEEN t.block * {BLOCK_STEPS} + 1 AND (t.block + 1) * {BLOCK_STEPS}) AS kept"""
AFTER_DELETE = f"""
CREATE FUNCTION metric_block_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM metric_block AS b USING {TOUCHED} AS t
        WHERE b.job_id = t.job_id AND b.name = t.name AND b.block = t.block;
    INSERT INTO metric_block {COLUMNS}
    {BLOCKS_OF.format(rows=KEPT)};
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "metric_block",
        sa.Column(
            "job_id", sa.String(length=36), sa.ForeignKey("job.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("lo_step", sa.Integer(), nullable=False),
        sa.Column("lo_value", sa.Float(), nullable=False),
        sa.Column("hi_step", sa.Integer(), nullable=False),
        sa.Column("hi_value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "name", "block"),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(AFTER_INSERT)
    op.execute(AFTER_DELETE)
    op.execute(
        "CREATE TRIGGER metric_block_insert AFTER INSERT ON metric REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION metric_block_after_insert()"
    )
    op.execute(
        "CREATE TRIGGER metric_block_delete AFTER DELETE ON metric REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION metric_block_after_delete()"
    )
    # Series written before this migration get their blocks once.
    op.execute(f"INSERT INTO metric_block {COLUMNS} {BLOCKS_OF.format(rows='metric')}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER metric_block_delete ON metric")
        op.execute("DROP TRIGGER metric_block_insert ON metric")
        op.execute("DROP FUNCTION metric_block_after_delete()")
        op.execute("DROP FUNCTION metric_block_after_insert()")
    op.drop_table("metric_block")
