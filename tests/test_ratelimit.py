"""migrations_app/ratelimit.py: counts are atomic on every cache the portal runs with, including the file cache
of the embedded default, where several processes (web, workers) share the counter files."""

import multiprocessing
import os
import uuid

import pytest
from django.core.cache import caches
from django.test import override_settings

from migrations_app.ratelimit import Rate, client_ip, counter_incr, hit
from tests.conftest import skip_or_fail

FILE_CACHE = "django.core.cache.backends.filebased.FileBasedCache"


def _count(directory: str, key: str, times: int, queue) -> None:
    import django
    from django.conf import settings

    with override_settings(CACHES={"default": {"BACKEND": FILE_CACHE, "LOCATION": directory}}):
        django.setup()
        caches._settings = settings.CACHES  # a fresh handler sees the override in this process
        from migrations_app import ratelimit

        ratelimit.cache = caches.create_connection("default")
        values = [ratelimit.counter_incr(key, 60) for _ in range(times)]
    queue.put(values)


def test_the_file_cache_counts_every_hit_from_parallel_processes(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [
        context.Process(target=_count, args=(str(tmp_path / "cache"), "k", 50, queue)) for _ in range(6)
    ]
    for process in processes:
        process.start()
    values = [v for _ in processes for v in queue.get(timeout=60)]
    for process in processes:
        process.join(timeout=60)
    # no two increments saw the same value, none was lost
    assert sorted(values) == list(range(1, 301))


def test_the_counter_starts_again_in_a_new_window(settings):
    assert counter_incr("fresh-key", 60) == 1
    assert counter_incr("fresh-key", 60) == 2


@pytest.mark.parametrize(
    "text, limit, period",
    [("600/min", 600, 60), ("10/s", 10, 1), ("30/m", 30, 60), ("300/h", 300, 3600), ("5/15m", 5, 900)],
)
def test_rates_are_read_as_written(text, limit, period):
    assert Rate.parse(text) == Rate(limit, period)


@pytest.mark.parametrize("text", ["", "ten/m", "5/fortnight", "5"])
def test_a_bad_rate_is_refused(text):
    with pytest.raises(ValueError, match="Not a rate"):
        Rate.parse(text)


class _Request:
    def __init__(self, remote, forwarded=""):
        self.META = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": forwarded}


def test_forwarded_for_counts_only_from_trusted_proxies(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8::/32"]
    assert client_ip(_Request("198.51.100.1", "203.0.113.5")) == "198.51.100.1"  # not a proxy: header ignored
    assert client_ip(_Request("10.0.0.5", "203.0.113.5")) == "203.0.113.5"
    assert (
        client_ip(_Request("10.0.0.5", "1.2.3.4, 203.0.113.5, 10.0.0.9")) == "203.0.113.5"
    )  # forged first hop
    assert client_ip(_Request("2001:db8::1", "garbage")) == "2001:db8::1"


# --- the sliding window, on each cache the portal runs with ---------------------------------------------------


@pytest.fixture(params=["redis", "locmem", "file"])
def limiter_cache(request, monkeypatch, settings, tmp_path):
    """ratelimit counting in Redis (the production cache), local memory (the tests' and a single process's) and
    the file cache (the embedded default)."""
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.redis import RedisCache

    from migrations_app import ratelimit

    settings.VAR_DIR = tmp_path
    if request.param == "redis":
        url = os.environ.get("CACHE_URL", "")
        if not url.startswith("redis"):
            skip_or_fail("the Redis case needs CACHE_URL=redis://...")
        made = RedisCache(url, {"KEY_PREFIX": f"rl-test-{uuid.uuid4().hex}"})
    elif request.param == "locmem":
        made = LocMemCache(f"rl-{uuid.uuid4().hex}", {})
    else:
        made = FileBasedCache(str(tmp_path / "cache"), {})
    monkeypatch.setattr(ratelimit, "cache", made)
    return made


def _clock(monkeypatch, start: float):
    from migrations_app import ratelimit

    now = [start]
    monkeypatch.setattr(ratelimit, "_now", lambda: now[0])
    return now


def test_the_limit_holds_across_a_window_edge(limiter_cache, monkeypatch):
    """The limit spent in the last second of a minute is not given again in the first second of the next (a
    fixed window allowed twice the limit within those two seconds)."""
    minute = 60 * 29_000_000
    now = _clock(monkeypatch, minute - 0.5)  # half a second before a minute boundary
    rate = Rate(limit=10, period=60)
    for i in range(10):  # ten requests in the last half second of the minute
        now[0] = minute - 0.5 + i * 0.04
        assert hit("edge", "alice", rate).allowed
    now[0] = minute + 0.5  # one second later, in the next clock minute
    refused = hit("edge", "alice", rate)
    assert not refused.allowed and refused.count == 10
    assert refused.retry_after in (59, 60)  # the first of the ten leaves the window at minute + 59.5
    now[0] = minute + 59.4
    assert not hit("edge", "alice", rate).allowed
    now[0] = minute + 59.52  # sixty seconds after the first (but not the second): one allowance back
    assert hit("edge", "alice", rate).allowed
    assert not hit("edge", "alice", rate).allowed
    assert hit("edge", "bob", rate).allowed  # another client has its own window


def test_no_stretch_of_the_period_holds_more_than_the_limit(limiter_cache, monkeypatch):
    """Requests every 0.7 s for three minutes against 10/min: in every 60-second stretch at most 10 allowed, and
    the allowance is used (not starved by the refused requests)."""
    now = _clock(monkeypatch, 1_700_000_000.0)
    rate = Rate(limit=10, period=60)
    allowed = []
    for step in range(int(180 / 0.7)):
        now[0] = 1_700_000_000.0 + step * 0.7
        if hit("steady", "alice", rate).allowed:
            allowed.append(now[0])
    for i, start in enumerate(allowed):
        assert len([t for t in allowed[i:] if t < start + 60]) <= 10
    assert len(allowed) >= 30


def _hit_many(directory: str, var_dir: str, times: int, queue) -> None:
    import django
    from django.conf import settings

    with override_settings(
        CACHES={"default": {"BACKEND": FILE_CACHE, "LOCATION": directory}}, VAR_DIR=var_dir
    ):
        django.setup()
        caches._settings = settings.CACHES
        from migrations_app import ratelimit

        ratelimit.cache = caches.create_connection("default")
        queue.put(sum(ratelimit.hit("parallel", "alice", Rate(100, 60)).allowed for _ in range(times)))


def test_the_file_cache_window_holds_against_parallel_processes(tmp_path, settings):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [
        context.Process(target=_hit_many, args=(str(tmp_path / "cache"), str(tmp_path), 40, queue))
        for _ in range(5)
    ]
    for process in processes:
        process.start()
    allowed = sum(queue.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert allowed == 100  # 200 asked, exactly the limit allowed
