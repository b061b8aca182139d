"""The database's clock. Leases are stamped and judged by it, never by a worker's: worker hosts' clocks
drift apart, and a host whose clock runs ahead must neither keep a dead runner's lease alive nor see live
leases as lapsed."""

from datetime import datetime
from typing import Any

from sqlalchemy import Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.db.base import UTCDateTime


class db_now(FunctionElement[datetime]):  # a SQL function, named like func.now
    """The database server's current time, plus `seconds` (negative: earlier; `db_now(-30)`, 30 s ago)."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(literal(float(seconds), Float()))  # a bound parameter: one cached statement


@compiles(db_now)
def _postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    # statement_timestamp(), not now(): a long transaction must not stamp the time it began.
    return f"(statement_timestamp() + make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    # SQLite runs in the caller's process, so this is that machine's clock: the embedded mode has one host.
    # Microseconds (milliseconds padded): the text SQLAlchemy stores datetimes as, so they compare as text.
    offset = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', {offset} || ' seconds') || '000')"
