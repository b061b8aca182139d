"""A full disk under the database, told apart from an outage: both reach us as OperationalError, but a full
disk is not fixed by waiting for a restart, and the people who can fix it need to be told which it is."""

import errno

DISK_FULL_SQLSTATE = "53100"  # PostgreSQL's disk_full: a table or index could not grow
SQLITE_FULL = 13  # "database or disk is full"


def is_no_space(error: BaseException) -> bool:
    """Whether `error` (SQLAlchemy's, the driver's under it, or an OSError) says the disk is full."""
    cause = getattr(error, "orig", None) or error
    if getattr(cause, "sqlstate", None) == DISK_FULL_SQLSTATE:
        return True
    if getattr(cause, "sqlite_errorcode", None) == SQLITE_FULL:
        return True
    return isinstance(cause, OSError) and cause.errno == errno.ENOSPC
