"""Loaded by Python at start-up when this folder is on PYTHONPATH: the process's wall clock (time.time,
time.time_ns, datetime.now) runs NNFORGE_TEST_CLOCK_SKEW_SECONDS ahead, as on a host whose clock is wrong.
The cluster's clock test puts it on one worker host's PYTHONPATH, so its training processes inherit it."""

import datetime as _datetime
import os
import time as _time

_SKEW = float(os.environ.get("NNFORGE_TEST_CLOCK_SKEW_SECONDS", "0"))

if _SKEW:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _time.time = lambda: _real_time() + _SKEW
    _time.time_ns = lambda: _real_time_ns() + int(_SKEW * 1e9)

    class _SkewedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> "_SkewedDatetime":
            return super().now(tz) + _datetime.timedelta(seconds=_SKEW)

    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
