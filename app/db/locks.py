"""Locks for decisions that count rows and then add to what they counted: an owner's queued jobs before a
new one is inserted, and an owner's running jobs before a claim starts one more. Each lock is held until
the caller's transaction ends, so the count and the change it allows commit as one.

Why these locks, and not a row to lock (`SELECT … FOR UPDATE` on a per-owner counter): PostgreSQL's
advisory locks need no table to keep in step and no row to create first (a new owner's first POST would
have to insert its row before it could lock it, and that insert races too); SQLite has a single writer, so
`BEGIN IMMEDIATE` (taking the write lock before the first read) serialises every writer, these included.
Under PostgreSQL's READ COMMITTED each statement reads a fresh snapshot, so a count made after the lock is
granted sees every change committed by the lock's previous holders.
"""

import hashlib

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.orm import Session


def lock_owner_jobs(session: Session, *, owner: str) -> None:
    """Serialise the transactions that add jobs for `owner` (other owners are not held up)."""
    _lock(session, f"owner-jobs:{owner}")


def lock_claims(session: Session) -> None:
    """Serialise claims. One lock for all: a claim's choice depends on every owner's running jobs, and
    claims are brief and rare (one per job start), so they never queue for long."""
    _lock(session, "claims")


def _lock(session: Session, name: str) -> None:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(cast(_key(name), BigInteger))))
    elif connection.dialect.name == "sqlite" and not _in_transaction(session):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _in_transaction(session: Session) -> bool:
    """pysqlite begins a transaction only before the first write, so one already begun holds the lock."""
    return bool(session.connection().connection.dbapi_connection.in_transaction)  # type: ignore[union-attr]


def _key(name: str) -> int:
    """A stable 64-bit key for a lock's name (collisions cost only some waiting)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
