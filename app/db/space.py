"""Giving deleted rows' space back to the file system.

SQLite keeps freed pages inside its file unless the database is in incremental auto-vacuum mode; then
`PRAGMA incremental_vacuum(N)` moves up to N pages' worth of the file's tail into free pages and truncates
it, each call short (one write transaction of at most N pages), so nothing waits on it for long.
PostgreSQL needs nothing here: autovacuum makes a deleted row's space, TOAST included, reusable, and
truncates a table's empty tail (`VACUUM FULL` alone rewrites the rest, under an exclusive lock)."""

import logging

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.db.engine import make_engine

INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental
PAGES_PER_CALL = 1024  # 4 MiB of 4 KiB pages: about 50 ms where pages must move (4096: 240 ms), on 2 cores
log = logging.getLogger("nnforge.db")


def use_incremental_auto_vacuum(url: str) -> None:
    """Put a SQLite database in incremental auto-vacuum mode: on a new database before its first table; an
    existing one is rewritten once by VACUUM (which needs the database to itself and, for a moment, its
    size again on disk). No-op on other databases and when already so."""
    if not url.startswith("sqlite") or url.rstrip("/") == "sqlite:" or ":memory:" in url:
        return
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            if connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == INCREMENTAL:
                return
            if connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
                log.info("rewriting the SQLite database once for incremental auto-vacuum")
            connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            # the mode is written to the file by the first table or by VACUUM (instant on an empty file)
            connection.exec_driver_sql("VACUUM")
    finally:
        engine.dispose()


def reclaim_space(factory: sessionmaker[Session], *, max_pages: int = PAGES_PER_CALL) -> int:
    """Return up to `max_pages` free pages of a SQLite database to the file system; the pages returned
    (0 on PostgreSQL, whose autovacuum does this)."""
    with factory() as session:
        connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        if connection.dialect.name != "sqlite":
            return 0
        return _incremental_vacuum(connection, max_pages)


def _incremental_vacuum(connection: Connection, max_pages: int) -> int:
    free_before = connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
    if not free_before:
        return 0
    # The pragma frees one page per step of its statement, and Python's sqlite3 steps a statement without
    # result columns once in execute(); executescript() steps each statement to its end.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
    # the shorter file is in the write-ahead log until a checkpoint copies it back; do it now, without
    # waiting for readers (PASSIVE), so the file shrinks as soon as they let it
    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    free_after = connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
    return int(free_before - free_after)
