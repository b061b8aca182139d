"""Request rates: a token bucket per key (an owner, or a client IP for 401s), in the API process's memory."""

import ipaddress
import threading
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate_per_second, burst, max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, owner: str) -> float:
        """0 when the request may proceed (and is counted); else the seconds until it may."""
        return self._take(owner, count=True)

    def waiting(self, key: str) -> float:
        """The seconds until `key` may proceed (0: now), counting nothing."""
        return self._take(key, count=False)

    def _take(self, key: str, *, count: bool) -> float:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if not count:
                    return 0.0  # a full bucket
                if len(self._buckets) >= self.max_keys:
                    self._forget(now)
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                if count:
                    bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def _forget(self, now: float) -> None:
        """Drop the buckets that have filled up again (as good as absent); if most are still draining (many
        keys at once, say addresses sprayed by one client), the least recently used half."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > self.max_keys // 2:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in by_age[: len(by_age) - self.max_keys // 2]:
                del self._buckets[key]


def client_key(host: str | None) -> str:
    """Whom a per-client limit counts: the IPv4 address, or the /64 network of an IPv6 address (one host
    usually has a whole /64, and could otherwise take a fresh bucket per address)."""
    if host is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
