import datetime as dt

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from migrations_app.services.tokens import token_create, token_scopes_for


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()  # throttle counters live in the cache
    yield
    cache.clear()


@pytest.fixture
def token_for(db):
    """token_for(user, scopes=("read", "write")) -> the raw bearer token, with the scopes asked for that the
    user's role can use (a viewer's token only reads: the role's own refusal is tested with a session)."""

    def make(user, scopes=("read", "write"), expires_at=None, name="script"):
        expires_at = expires_at or timezone.now() + dt.timedelta(days=30)
        scopes = [scope for scope in scopes if scope in token_scopes_for(user)]
        return token_create(user=user, name=name, scopes=scopes, expires_at=expires_at)[1]

    return make


@pytest.fixture
def api(token_for):
    """api(user, scopes=...) -> a client that sends a bearer token for that user (and no session)."""

    def make(user, scopes=("read", "write")):
        return Client(HTTP_AUTHORIZATION=f"Bearer {token_for(user, scopes)}")

    return make
