"""The API token pages: made and shown once, listed without the secret, revoked only by their owner."""

from migrations_app.models import ApiToken
from tests.factories import UserFactory


def test_it_creates_a_token_and_shows_it_once(client_for, admin_a):
    client = client_for(admin_a)
    response = client.post(
        "/api-tokens/", {"name": "sync", "scopes": ["read", "write"], "expires_in_days": "30"}
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    page = response.content.decode()
    assert f"mcp_{token.prefix}_" in page and response["Cache-Control"] == "no-store"
    raw = page.split('<code id="new-token">')[1].split("<")[0]
    assert client.get("/api/v1/organisations/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    listed = client.get("/api-tokens/").content.decode()
    assert "sync" in listed and raw not in listed


def test_it_needs_a_name_and_a_scope(client_for, admin_a):
    response = client_for(admin_a).post("/api-tokens/", {"name": "", "expires_in_days": "30"})
    assert "Enter a name for the token" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_revokes_only_your_own(client_for, admin_a, admin_b):
    client = client_for(admin_a)
    client.post("/api-tokens/", {"name": "sync", "scopes": ["read"], "expires_in_days": "30"})
    token = ApiToken.objects.get()
    assert client_for(admin_b).post(f"/api-tokens/{token.pk}/revoke/").status_code == 404
    client = client_for(admin_a)
    assert client.post(f"/api-tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_header_links_to_tokens(client_for, db):
    assert "/api-tokens/" in client_for(UserFactory(role="viewer")).get("/api-tokens/").content.decode()
