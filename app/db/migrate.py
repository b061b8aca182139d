"""Apply the Alembic migrations: the only way the schema is created or changed."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.db.space import use_incremental_auto_vacuum

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    use_incremental_auto_vacuum(url)  # SQLite: before the first table, so deleted rows' space comes back
    command.upgrade(alembic_config(url), "head")
