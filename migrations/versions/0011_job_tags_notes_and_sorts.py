"""Finding jobs again: tags and notes, and the indexes behind GET /v1/jobs's filters and sorts.

`job.tags` (a JSON list) is what a job says; `job_tag` (one row per tag) and `job_best_metric` (one row per
finite number of `best_metrics`, then of `best_test_metrics` for names not in it) are indexes of it that
the database keeps itself, with row triggers on `job`, whoever writes it (the API, the worker's hook, a
bulk insert). Both dialects get them: SQLite's triggers read the JSON with json_each. A later migration
that rebuilds `job` on SQLite (a batch "move and copy") drops triggers with the old table and must
create them again (TRIGGERS_SQLITE).

PostgreSQL also gets `(owner, id varchar_pattern_ops)` for id prefixes (its collation is not C, so the
primary key cannot serve LIKE 'prefix%') and expression indexes for sort=duration, ?optimizer= and
?dataset= (which also give the planner the statistics of those expressions: without them it guessed that
`optimizer=adam` was rare and read every job to find a page of a tag's).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# app.db.tables's expressions, as they are now (a migration keeps its own copy)
DURATION_SECONDS = "CAST(EXTRACT(EPOCH FROM finished_at - started_at) AS DOUBLE PRECISION)"
OPTIMIZER = "(spec #>> '{optimizer,name}')"
DATASET = "COALESCE(spec #>> '{dataset,name}', spec #>> '{dataset,id}')"

PG_TAGS = """
CREATE FUNCTION job_tag_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_tag WHERE job_id = NEW.id;
    INSERT INTO job_tag (job_id, tag)
        SELECT DISTINCT NEW.id, t FROM json_array_elements_text(NEW.tags) AS t;
    RETURN NULL;
END $$
"""
# best_metrics first: a name in both keeps the best epoch's own value.
PG_METRICS = """
CREATE FUNCTION job_best_metric_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_best_metric WHERE job_id = NEW.id;
    INSERT INTO job_best_metric (job_id, owner, name, value)
        SELECT NEW.id, NEW.owner, key, value::text::double precision FROM json_each(NEW.best_metrics)
        WHERE json_typeof(value) = 'number';
    INSERT INTO job_best_metric (job_id, owner, name, value)
        SELECT NEW.id, NEW.owner, key, value::text::double precision FROM json_each(NEW.best_test_metrics)
        WHERE json_typeof(value) = 'number'
        ON CONFLICT (job_id, name) DO NOTHING;
    RETURN NULL;
END $$
"""
# json columns have no equality operator: compare their text.
TRIGGERS_POSTGRESQL = [
    "CREATE TRIGGER job_tag_insert AFTER INSERT ON job FOR EACH ROW EXECUTE FUNCTION job_tag_sync()",
    "CREATE TRIGGER job_tag_update AFTER UPDATE OF tags ON job FOR EACH ROW "
    "WHEN (OLD.tags::text IS DISTINCT FROM NEW.tags::text) EXECUTE FUNCTION job_tag_sync()",
    "CREATE TRIGGER job_best_metric_insert AFTER INSERT ON job FOR EACH ROW "
    "EXECUTE FUNCTION job_best_metric_sync()",
    "CREATE TRIGGER job_best_metric_update AFTER UPDATE OF best_metrics, best_test_metrics ON job "
    "FOR EACH ROW WHEN (OLD.best_metrics::text IS DISTINCT FROM NEW.best_metrics::text "
    "OR OLD.best_test_metrics::text IS DISTINCT FROM NEW.best_test_metrics::text) "
    "EXECUTE FUNCTION job_best_metric_sync()",
]

SQLITE_TAGS = """
    DELETE FROM job_tag WHERE job_id = NEW.id;
    INSERT OR IGNORE INTO job_tag (job_id, tag) SELECT NEW.id, value FROM json_each(NEW.tags);
"""
SQLITE_METRICS = """
    DELETE FROM job_best_metric WHERE job_id = NEW.id;
    INSERT OR IGNORE INTO job_best_metric (job_id, owner, name, value)
        SELECT NEW.id, NEW.owner, key, value FROM json_each(NEW.best_metrics)
        WHERE type IN ('integer', 'real');
    INSERT OR IGNORE INTO job_best_metric (job_id, owner, name, value)
        SELECT NEW.id, NEW.owner, key, value FROM json_each(NEW.best_test_metrics)
        WHERE type IN ('integer', 'real');
"""
TRIGGERS_SQLITE = [
    f"CREATE TRIGGER job_tag_insert AFTER INSERT ON job BEGIN {SQLITE_TAGS} END",
    f"CREATE TRIGGER job_tag_update AFTER UPDATE OF tags ON job WHEN OLD.tags IS NOT NEW.tags "
    f"BEGIN {SQLITE_TAGS} END",
    f"CREATE TRIGGER job_best_metric_insert AFTER INSERT ON job BEGIN {SQLITE_METRICS} END",
    "CREATE TRIGGER job_best_metric_update AFTER UPDATE OF best_metrics, best_test_metrics ON job "
    "WHEN OLD.best_metrics IS NOT NEW.best_metrics OR OLD.best_test_metrics IS NOT NEW.best_test_metrics "
    f"BEGIN {SQLITE_METRICS} END",
]
TRIGGER_NAMES = ["job_tag_insert", "job_tag_update", "job_best_metric_insert", "job_best_metric_update"]


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
    op.create_table(
        "job_tag",
        sa.Column(
            "job_id", sa.String(length=36), sa.ForeignKey("job.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("tag", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "tag"),
    )
    op.create_index("ix_job_tag_tag_job", "job_tag", ["tag", "job_id"])
    op.create_table(
        "job_best_metric",
        sa.Column(
            "job_id", sa.String(length=36), sa.ForeignKey("job.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )
    op.create_index(
        "ix_job_best_metric_owner_name_value", "job_best_metric", ["owner", "name", "value", "job_id"]
    )
    op.create_index("ix_job_owner_id", "job", ["owner", "id"], postgresql_ops={"id": "varchar_pattern_ops"})
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_job_owner_duration ON job (owner, ({DURATION_SECONDS}), id)")
        op.execute(f"CREATE INDEX ix_job_owner_optimizer ON job (owner, ({OPTIMIZER}), created_at, id)")
        op.execute(f"CREATE INDEX ix_job_owner_dataset ON job (owner, ({DATASET}), created_at, id)")
        for statement in [PG_TAGS, PG_METRICS, *TRIGGERS_POSTGRESQL]:
            op.execute(statement)
        # Jobs from before this migration: their metric rows, once (none has tags yet).
        op.execute(
            "INSERT INTO job_best_metric (job_id, owner, name, value) "
            "SELECT id, owner, key, value::text::double precision FROM job, json_each(best_metrics) "
            "WHERE json_typeof(value) = 'number'"
        )
        op.execute(
            "INSERT INTO job_best_metric (job_id, owner, name, value) "
            "SELECT id, owner, key, value::text::double precision FROM job, json_each(best_test_metrics) "
            "WHERE json_typeof(value) = 'number' ON CONFLICT (job_id, name) DO NOTHING"
        )
        return
    for statement in TRIGGERS_SQLITE:
        op.execute(statement)
    op.execute(
        "INSERT OR IGNORE INTO job_best_metric (job_id, owner, name, value) "
        "SELECT job.id, job.owner, m.key, m.value FROM job, json_each(job.best_metrics) AS m "
        "WHERE m.type IN ('integer', 'real')"
    )
    op.execute(
        "INSERT OR IGNORE INTO job_best_metric (job_id, owner, name, value) "
        "SELECT job.id, job.owner, m.key, m.value FROM job, json_each(job.best_test_metrics) AS m "
        "WHERE m.type IN ('integer', 'real')"
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER {name} ON job" if postgresql else f"DROP TRIGGER {name}")
    if postgresql:
        op.execute("DROP FUNCTION job_best_metric_sync()")
        op.execute("DROP FUNCTION job_tag_sync()")
        for index in ("ix_job_owner_dataset", "ix_job_owner_optimizer", "ix_job_owner_duration"):
            op.execute(f"DROP INDEX {index}")
    op.drop_index("ix_job_owner_id", table_name="job")
    op.drop_table("job_best_metric")
    op.drop_table("job_tag")
    with op.batch_alter_table("job") as batch:
        batch.drop_column("notes")
        batch.drop_column("tags")
