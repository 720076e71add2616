"""The API throttle holds: counted atomically (parallel clients get no more than the limit), per user across all
their tokens, and per address for anonymous and failed-token requests, which DRF's throttles never saw."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.test import Client

from tests.conftest import skip_or_fail
from tests.factories import UserFactory


def test_anonymous_requests_are_throttled_by_address(client, db, settings):
    settings.API_ANON_THROTTLE_RATE = "3/min"
    codes = [client.get("/api/v1/organisations/", REMOTE_ADDR="192.0.2.7").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert client.get("/api/v1/organisations/", REMOTE_ADDR="192.0.2.8").status_code == 401  # another address


def test_guessing_tokens_is_throttled_by_address_and_a_valid_token_still_works(admin_a, token_for, settings):
    settings.API_ANON_THROTTLE_RATE = "3/min"
    guesser = Client(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    codes = [guesser.get("/api/v1/organisations/", REMOTE_ADDR="192.0.2.9").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    script = Client(HTTP_AUTHORIZATION=f"Bearer {token_for(admin_a)}")
    assert script.get("/api/v1/organisations/", REMOTE_ADDR="192.0.2.9").status_code == 200


@pytest.mark.parametrize("workers", [4, 16])
def test_parallel_clients_get_no_more_than_the_limit(
    live_server, transactional_db, settings, token_for, workers
):
    """A real threaded server, `workers` connections at once: exactly the limit gets through. (PostgreSQL: the
    SQLite test database is one in-memory file that parallel threads trip over, which is not what's tested.)"""
    if connection.vendor != "postgresql":
        skip_or_fail(
            "parallel requests against a live server need PostgreSQL: set DATABASE_URL=postgres://..."
        )
    settings.API_THROTTLE_RATE = "40/min"
    user = UserFactory(role="programme_office")
    tokens = [token_for(user, name=f"t{n}") for n in range(4)]  # several tokens, one allowance

    def get(n):
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
        return httpx.get(f"{live_server.url}/api/v1/organisations/", headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = list(pool.map(get, range(100)))
    assert codes.count(200) == 40 and codes.count(429) == 60
