"""Engines and sessions. SQLite gets WAL and a busy timeout so the API and a worker can share it."""

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A peer that vanishes without closing (a worker host cut off, the database's host gone) is noticed in about
# 10 s, not after the kernel's ~15 minutes of retransmissions: the client drops a connection whose data stays
# unacknowledged or whose keepalives go unanswered, and so does the server, whose backend then rolls back and
# releases the row locks a cut-off runner held (they would block taking its lapsed job back).
POSTGRES_LIVENESS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "options": "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=10000",
}


# JSON has no NaN or infinities (PostgreSQL's json type refuses the tokens Python writes for them); a
# diverged metric is still a value worth keeping, so JSON columns hold these strings, which pydantic's float
# fields read back as the numbers.
NON_FINITE_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _finite_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return NON_FINITE_TEXT[str(value)]
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


def dump_json(value: Any) -> str:
    """The JSON columns' serializer: standard JSON, non-finite floats as "NaN", "Infinity", "-Infinity"."""
    return json.dumps(_finite_json(value), allow_nan=False)


def make_engine(url: str, *, pre_ping: bool = True, **kwargs: Any) -> Engine:
    kwargs.setdefault("json_serializer", dump_json)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Fail fast instead of hanging when the database is unreachable.
    return create_engine(
        url, pool_pre_ping=pre_ping, connect_args={"connect_timeout": 2, **POSTGRES_LIVENESS}, **kwargs
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a commit no longer waits for fsync
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A short unit of work: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session
