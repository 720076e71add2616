"""Counting requests in the shared cache, atomically: the API's throttle, the sign-in lockout and the public
lookup's limits all count here.

A fixed window per (scope, who): the key names the window, `cache.add` starts it at 0 and `cache.incr` counts.
Redis INCR is atomic across every web process; Django's local-memory cache increments under its own lock. The
file cache (the embedded default) reads and writes a file, which two processes can interleave, so there the
increment runs under an exclusive lock on a lock file beside the cache (one machine is all the file cache
serves). A read-modify-write of a list of timestamps (DRF's SimpleRateThrottle) let 700 of 700 parallel
requests through a limit of 600.

client_ip() is the one place a client's address is read: REMOTE_ADDR, or, when that is a proxy named in
TRUSTED_PROXIES, the nearest address in X-Forwarded-For that is not one of them (README: "Behind a proxy")."""

import fcntl
import hashlib
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """ "600/min", "10/s", "30/m", "600/h", "5/15m" (a number before the unit multiplies it)."""
        count, _, per = text.strip().partition("/")
        digits = "".join(c for c in per if c.isdigit())
        unit = per[len(digits) :][:1].lower()
        if not count.isdigit() or unit not in _UNITS:
            raise ValueError(f"Not a rate: {text!r} (write e.g. 600/min, 30/m, 5/15m)")
        return cls(limit=int(count), period=int(digits or 1) * _UNITS[unit])


@dataclass(frozen=True)
class Hit:
    allowed: bool
    count: int
    retry_after: int  # seconds until the window ends


def _window(period: int) -> tuple[int, int]:
    now = time.time()
    start = int(now // period) * period
    return start, max(1, int(start + period - now))


def _key(scope: str, ident: str, period: int, start: int) -> str:
    digest = hashlib.sha256(ident.encode()).hexdigest()[
        :32
    ]  # any ident (an address, a username) is a safe key
    return f"rl:{scope}:{period}:{start}:{digest}"


def _native_atomic() -> bool:
    """Redis and memcached increment on the server, local memory under its lock; the file and database
    caches read and write, so they count under _locked()."""
    return isinstance(cache, (RedisCache, LocMemCache)) or "memcache" in type(cache).__module__.lower()


def _locked(key: str):
    """An exclusive lock shared by every process on this machine, one of 64 by key."""
    directory = Path(settings.VAR_DIR) / "ratelimit-locks"
    directory.mkdir(parents=True, exist_ok=True)
    slot = int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) % 64
    handle = open(directory / f"{slot}.lock", "a")  # noqa: SIM115 (closed by _Lock)
    return _Lock(handle)


class _Lock:
    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _incr(key: str, timeout: int) -> int:
    cache.add(key, 0, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        return 1


def counter_incr(key: str, timeout: int) -> int:
    """Add one to a counter that lives `timeout` seconds from its first count; the new value, atomically."""
    if _native_atomic():
        return _incr(key, timeout)
    with _locked(key):
        return _incr(key, timeout)


def hit(scope: str, ident: str, rate: Rate) -> Hit:
    """Count one request against `rate` for `ident`; allowed while the window's count is within the limit."""
    start, remaining = _window(rate.period)
    count = counter_incr(_key(scope, ident, rate.period, start), rate.period + 5)
    return Hit(allowed=count <= rate.limit, count=count, retry_after=remaining)


def peek(scope: str, ident: str, rate: Rate) -> Hit:
    """The window's count so far, without counting."""
    start, remaining = _window(rate.period)
    count = cache.get(_key(scope, ident, rate.period, start)) or 0
    return Hit(allowed=count < rate.limit, count=count, retry_after=remaining)


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.TRUSTED_PROXIES)


def client_ip(request) -> str:
    """The client's address: X-Forwarded-For is believed only from a proxy named in TRUSTED_PROXIES, and only
    up to the first address that is not one of them (a client cannot forge its way past the proxy)."""
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    if not settings.TRUSTED_PROXIES or not _trusted(remote):
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if not _trusted(address):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return remote
    return remote
