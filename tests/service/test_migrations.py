"""The schema is created only by the migrations, and they build exactly what the tables declare."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db import job_logs, tables  # noqa: F401  (every table on Base.metadata)
from app.db.base import Base
from app.db.engine import make_engine
from app.db.migrate import upgrade_to_head


def _differences(url: str) -> list[object]:
    engine = make_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    return list(differences)


def test_migrations_match_the_tables_on_postgresql(postgres_url: str) -> None:
    assert _differences(postgres_url) == []


@pytest.mark.parametrize("runs", [1, 2])
def test_migrations_match_the_tables_on_sqlite_and_rerun_cleanly(tmp_path: Path, runs: int) -> None:
    url = f"sqlite:///{tmp_path / 'nnforge.db'}"
    for _ in range(runs):
        upgrade_to_head(url)
    assert _differences(url) == []


def test_postgresql_stores_checkpoint_bytes_uncompressed(postgres_url: str) -> None:
    """Checkpoints are incompressible floats: compressing each one only slows the worker's write."""
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        storage = connection.exec_driver_sql(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'checkpoint'::regclass AND attname = 'data'"
        ).scalar_one()
    engine.dispose()
    assert storage == "e"  # EXTERNAL: out of line, never compressed (the default, EXTENDED, is "x")
