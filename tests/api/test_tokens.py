"""Bearer tokens: stored hashed, scoped, expiring, revocable, last use recorded at most once a minute."""

import datetime as dt
import hashlib

import pytest
from django.test import Client
from django.utils import timezone

from migrations_app.models import ApiToken
from migrations_app.services.tokens import token_create, token_revoke


def bearer(raw):
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_the_raw_token_is_never_stored(admin_a):
    token, raw = token_create(user=admin_a, name="ci", scopes=["read"], expires_at=None)
    secret = raw.split("_", 2)[2]
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.values().get())


def test_a_token_authenticates_and_records_last_use_once_a_minute(admin_a, token_for, org_a):
    raw = token_for(admin_a)
    assert bearer(raw).get("/api/v1/organisations/").status_code == 200
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    bearer(raw).get("/api/v1/organisations/")
    assert ApiToken.objects.get().last_used_at == first  # not rewritten within the minute
    ApiToken.objects.update(last_used_at=first - dt.timedelta(minutes=2))
    bearer(raw).get("/api/v1/organisations/")
    assert ApiToken.objects.get().last_used_at > first - dt.timedelta(minutes=2)


@pytest.mark.parametrize("raw", ["nonsense", "mcp_0123456789ab_wrong", ""])
def test_it_refuses_an_unknown_token(db, raw, admin_a, token_for):
    token_for(admin_a)
    response = bearer(raw).get("/api/v1/organisations/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_it_refuses_an_expired_token(admin_a, token_for):
    raw = token_for(admin_a)
    ApiToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = bearer(raw).get("/api/v1/organisations/")
    assert response.status_code == 401 and response.json()["code"] == "token_invalid"


def test_it_refuses_a_revoked_token(admin_a, token_for):
    raw = token_for(admin_a)
    token_revoke(token=ApiToken.objects.get(), actor=admin_a)
    assert bearer(raw).get("/api/v1/organisations/").status_code == 401


def test_it_refuses_an_inactive_user(admin_a, token_for):
    raw = token_for(admin_a)
    admin_a.is_active = False
    admin_a.save()
    assert bearer(raw).get("/api/v1/organisations/").status_code == 401


def test_a_read_token_cannot_write(officer, token_for):
    raw = token_for(officer, scopes=["read"])
    response = bearer(raw).post("/api/v1/endpoints/", {}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_a_write_token_cannot_read_without_read(officer, token_for):
    raw = token_for(officer, scopes=["write"])
    assert bearer(raw).get("/api/v1/endpoints/").json()["code"] == "insufficient_scope"


def test_approving_needs_the_approve_scope(officer, token_for):
    raw = token_for(officer, scopes=["read", "write"])
    response = bearer(raw).post("/api/v1/waves/1/approve/", {}, content_type="application/json")
    assert response.status_code == 403 and "'approve'" in response.json()["detail"]


def test_only_the_owner_revokes(admin_a, admin_b):
    token, _ = token_create(user=admin_a, name="ci", scopes=["read"], expires_at=None)
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        token_revoke(token=token, actor=admin_b)


def test_it_throttles_per_user_across_all_their_tokens_with_retry_after(admin_a, token_for, settings):
    settings.API_THROTTLE_RATE = "2/min"
    raw, other = token_for(admin_a), token_for(admin_a, name="other")
    assert bearer(raw).get("/api/v1/organisations/").status_code == 200
    assert bearer(raw).get("/api/v1/organisations/").status_code == 200
    response = bearer(raw).get("/api/v1/organisations/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"
    # a second token is no second allowance: minting tokens buys nothing
    assert bearer(other).get("/api/v1/organisations/").status_code == 429
