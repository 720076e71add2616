"""portal.cache.RedisCache: Django's Redis cache with one redis-py client per connection pool, shared by a
process's threads (Django's builds a client per operation: 0.5-0.8 ms of CPU each here)."""

import os
import threading
import uuid

import pytest

from portal.cache import RedisCache


@pytest.fixture
def redis_cache():
    url = os.environ.get("CACHE_URL", "")
    if not url.startswith("redis://"):
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail("REQUIRE_SERVICES is set but CACHE_URL is not redis://")
        pytest.skip("needs CACHE_URL=redis://...")
    cache = RedisCache(url, {"KEY_PREFIX": f"cache-test-{uuid.uuid4().hex}"})
    yield cache
    cache.clear()


def test_one_client_serves_every_operation_and_thread(redis_cache):
    redis_cache.set("a", {"figures": [1, 2, 3]}, 30)
    client = redis_cache._cache.get_client("a", write=True)
    assert redis_cache._cache.get_client("b") is client  # one server: one pool, one client

    errors = []

    def work(n):
        try:
            for i in range(50):
                redis_cache.set(f"k{n}:{i}", i, 30)
                assert redis_cache.get(f"k{n}:{i}") == i
            assert redis_cache.incr(f"k{n}:0", 5) == 5
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert redis_cache.get("a") == {"figures": [1, 2, 3]}
    assert redis_cache._cache.get_client("c") is client
