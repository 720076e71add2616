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


def test_the_revoke_button_is_a_real_form_that_revokes(client_for, admin_a):
    client = client_for(admin_a)
    client.post("/api-tokens/", {"name": "sync <b>", "scopes": ["read"], "expires_in_days": "30"})
    token = ApiToken.objects.get()
    page = client.get("/api-tokens/").content.decode()
    assert "&lt;form" not in page and "&lt;button" not in page
    assert f'<form method="post" action="/api-tokens/{token.pk}/revoke/">' in page
    assert "sync &lt;b&gt;</span></button>" in page  # the token's name is still escaped
    assert client.post(f"/api-tokens/{token.pk}/revoke/").status_code == 302
    assert "Revoked " in client.get("/api-tokens/").content.decode()


def test_it_offers_and_allows_only_the_scopes_the_role_can_use(client_for, db):
    viewer = UserFactory(role="viewer")
    client = client_for(viewer)
    page = client.get("/api-tokens/").content.decode()
    assert 'value="read"' in page and 'value="write"' not in page and 'value="approve"' not in page
    response = client.post(
        "/api-tokens/", {"name": "x", "scopes": ["read", "write", "approve"], "expires_in_days": "30"}
    )
    assert response.status_code == 200 and not ApiToken.objects.exists()
    trust_admin = client_for(UserFactory(role="trust_admin")).get("/api-tokens/").content.decode()
    assert 'value="write"' in trust_admin and 'value="approve"' not in trust_admin
    officer = client_for(UserFactory(role="programme_office")).get("/api-tokens/").content.decode()
    assert 'value="approve"' in officer
