"""Failed sign-ins are slowed, then refused for a while, per account and per address, with the lockout in the
audit log: the sign-in page is not an unlimited password oracle."""

import pytest
from django.contrib.auth import SESSION_KEY

from migrations_app.models import Event
from tests.factories import UserFactory

RIGHT = "correct horse battery staple"


@pytest.fixture
def jane(db, settings):
    settings.SIGN_IN_SLOW_AFTER = 3
    settings.SIGN_IN_MAX_FAILURES = 5
    settings.SIGN_IN_MAX_FAILURES_PER_ADDRESS = 8
    return UserFactory(username="jane", password=RIGHT)


def attempt(client, username, password, ip="192.0.2.10"):
    return client.post("/sign-in/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def expire_waits(monkeypatch):
    """Skip the slowing waits (seconds) without sleeping: they are cache keys with a short life."""
    from django.core.cache import cache

    original = cache.get
    monkeypatch.setattr(cache, "get", lambda key, *a: None if ":wait:" in key else original(key, *a))


def test_after_a_few_failures_the_next_attempt_must_wait(client, jane):
    for _ in range(3):
        assert attempt(client, "jane", "wrong").status_code == 200
    slowed = attempt(client, "jane", RIGHT)
    assert slowed.status_code == 429 and "Wait 1 seconds" in slowed.content.decode()
    assert SESSION_KEY not in client.session


def test_an_account_is_locked_out_even_for_the_right_password_and_it_is_audited(client, jane, monkeypatch):
    expire_waits(monkeypatch)
    for _ in range(5):
        attempt(client, "jane", "wrong")
    locked = attempt(client, "JANE", RIGHT, ip="198.51.100.1")  # another address, another spelling
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.content.decode()
    assert SESSION_KEY not in client.session
    event = Event.objects.get(action="sign_in.locked")
    assert event.subject == "jane" and event.data["scope"] == "account"


def test_one_address_trying_many_accounts_is_locked_out(client, jane, monkeypatch):
    expire_waits(monkeypatch)
    for n in range(8):
        attempt(client, f"user{n}", "guess")
    refused = attempt(client, "jane", RIGHT)
    assert refused.status_code == 429 and SESSION_KEY not in client.session
    assert Event.objects.filter(action="sign_in.locked", data__scope="address").count() == 1
    assert attempt(client, "jane", RIGHT, ip="198.51.100.2").status_code == 302  # another address is fine


def test_a_success_clears_the_failures(client, jane):
    attempt(client, "jane", "wrong")
    attempt(client, "jane", "wrong")
    assert attempt(client, "jane", RIGHT).status_code == 302
    client.post("/sign-out/")
    for _ in range(2):
        attempt(client, "jane", "wrong")
    assert attempt(client, "jane", RIGHT).status_code == 302  # two failures since the success: not slowed
