"""Declarative base with a naming convention, so migrations name constraints predictably."""

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MetricValue(TypeDecorator[float]):
    """A float that may be NaN or infinite. PostgreSQL keeps NaN; SQLite stores NaN as NULL (read as NaN)."""

    impl = Float()
    cache_ok = True

    def process_result_value(self, value: float | None, dialect: Dialect) -> float:
        return math.nan if value is None else value


def utcnow() -> datetime:
    return datetime.now(UTC)
