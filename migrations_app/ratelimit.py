"""Counting requests in the shared cache, atomically: the API's throttle, the sign-in lockout and the public
lookup's limits all count here.

hit(): a sliding window per (scope, who), exact (see below): at most the limit in any stretch of the period.
counter_incr(): a plain counter from its first count (the sign-in lockout's failures): `cache.add` starts it at
0 and `cache.incr` counts. Redis is atomic across every web process (a Lua script, INCR); the local-memory cache
is one process's, counted under a lock; the file cache (the embedded default) reads and writes a file, which two
processes can interleave, so there the work runs under an exclusive lock on a lock file beside the cache (one
machine is all the file cache serves). An unlocked read-modify-write of a list of timestamps (DRF's
SimpleRateThrottle) let 700 of 700 parallel requests through a limit of 600.

client_ip() is the one place a client's address is read: REMOTE_ADDR, or, when that is a proxy named in
TRUSTED_PROXIES, the nearest address in X-Forwarded-For that is not one of them (README: "Behind a proxy")."""

import fcntl
import hashlib
import ipaddress
import math
import secrets
import threading
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
    retry_after: int  # when refused: seconds until an allowance comes back (0 when allowed)


def _now() -> float:
    """The clock the limits count by (web servers' clocks are kept in step by NTP; tests move this one)."""
    return time.time()


def _key(scope: str, ident: str, period: int) -> str:
    digest = hashlib.sha256(ident.encode()).hexdigest()[
        :32
    ]  # any ident (an address, a username) is a safe key
    return f"rl2:{scope}:{period}:{digest}"


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


# A sliding window, exact: the times of the requests allowed in the last `period` seconds. A request is allowed
# while fewer than `limit` of them are younger than `period`, so no stretch of `period` seconds ever holds more
# than `limit` allowed requests (a fixed window allowed up to twice the limit across its edge: the limit at
# 11:59:59 and the limit again at 12:00:00). Refused requests are not recorded: hammering does not extend the
# wait, and an allowance comes back exactly `period` after the request that used it.
#
# Redis: one sorted set per (scope, who), scored by time, trimmed and counted and added to in one Lua script
# (atomic across every web process). Other caches: the same list of times, read and written under a lock
# (the local-memory cache is one process's: a thread lock; the file cache is one machine's: _locked()).
_SLIDING_LUA = """
local key, now, period, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(period * 1000) + 1000)
  return {1, count + 1, '0'}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, count, oldest[2]}
"""
_thread_lock = threading.Lock()


def _sliding_redis(key: str, now: float, rate: Rate) -> tuple[bool, int, float]:
    client = cache._cache.get_client(key, write=True)
    member = f"{now:.6f}:{secrets.token_hex(4)}"
    allowed, count, oldest = client.eval(
        _SLIDING_LUA, 1, cache.make_and_validate_key(key), now, rate.period, rate.limit, member
    )
    return bool(allowed), int(count), float(oldest)


def _sliding_cache(key: str, now: float, rate: Rate) -> tuple[bool, int, float]:
    lock = _thread_lock if isinstance(cache, LocMemCache) else _locked(key)
    with lock:
        times = [t for t in (cache.get(key) or []) if t > now - rate.period]
        if len(times) < rate.limit:
            times.append(now)
            cache.set(key, times, rate.period + 1)
            return True, len(times), 0.0
        return False, len(times), min(times)


def hit(scope: str, ident: str, rate: Rate) -> Hit:
    """Count one request against `rate` for `ident`: allowed while fewer than `rate.limit` requests were
    allowed in the last `rate.period` seconds; when refused, retry_after is when the oldest of them leaves."""
    now = _now()
    key = _key(scope, ident, rate.period)
    if isinstance(cache, RedisCache):
        allowed, count, oldest = _sliding_redis(key, now, rate)
    else:
        allowed, count, oldest = _sliding_cache(key, now, rate)
    retry_after = 0 if allowed else max(1, math.ceil(oldest + rate.period - now))
    return Hit(allowed=allowed, count=count, retry_after=retry_after)


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
