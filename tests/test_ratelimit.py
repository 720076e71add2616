"""migrations_app/ratelimit.py: counts are atomic on every cache the portal runs with, including the file cache
of the embedded default, where several processes (web, workers) share the counter files."""

import multiprocessing

import pytest
from django.core.cache import caches
from django.test import override_settings

from migrations_app.ratelimit import Rate, client_ip, counter_incr

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
