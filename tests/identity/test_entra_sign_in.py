"""Entra ID sign-in through MSAL's authorization-code flow, against the fake authority (no browser)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from migrations_app.models import Event, User
from tests.factories import OrganisationFactory, UserFactory
from tests.identity.conftest import follow_fake_authority


def _start(client, next_url: str = "") -> str:
    response = client.get("/sign-in/entra/" + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302
    return response["Location"]


def _sign_in(client, entra, person, next_url: str = ""):
    callback = follow_fake_authority(entra, _start(client, next_url), person)
    parts = urlsplit(callback)
    return client.get(
        parts.path, parse_qs(parts.query) and {k: v[0] for k, v in parse_qs(parts.query).items()}
    )


def test_it_sends_the_browser_to_the_tenant_authority_with_pkce_state_and_nonce(client, db, entra):
    auth_uri = _start(client)
    parts = urlsplit(auth_uri)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.netloc == "login.microsoftonline.com"
    assert parts.path == f"/{entra.tenant_id}/oauth2/v2.0/authorize"  # the tenant, never /common
    assert query["client_id"] == entra.client_id
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["state"] and query["nonce"]
    assert query["redirect_uri"] == "http://testserver/sign-in/entra/callback/"
    assert client.session["entra_flow"]["flow"]["state"] == query["state"]


def test_first_sign_in_creates_the_user_keyed_by_oid_with_the_role(client, db, entra):
    person = entra.add_person(
        "jane.doe@nhs.net", "Jane Doe", ["Programme.Approver"], given_name="Jane", family_name="Doe"
    )

    response = _sign_in(client, entra, person)

    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(entra_oid=person.oid)
    assert user.role == User.Role.PROGRAMME_OFFICE
    assert (user.email, user.first_name, user.last_name) == ("jane.doe@nhs.net", "Jane", "Doe")
    assert not user.has_usable_password()
    assert client.session["_auth_user_id"] == str(user.pk)
    assert Event.objects.filter(action="user.created", actor=user).exists()
    assert client.get("/organisations/").status_code == 200


def test_a_role_change_in_entra_takes_effect_at_the_next_sign_in(client, db, entra):
    person = entra.add_person("sam@nhs.net", "Sam", ["Programme.Viewer"])
    _sign_in(client, entra, person)
    assert User.objects.get(entra_oid=person.oid).role == User.Role.VIEWER
    client.post("/sign-out/")

    person.roles = ["Programme.Officer", "Programme.Viewer"]  # the strongest role wins
    person.username = "sam.renamed@nhs.net"  # a renamed UPN is still the same person (oid)
    _sign_in(client, entra, person)

    assert User.objects.filter(entra_oid=person.oid).count() == 1
    assert User.objects.get(entra_oid=person.oid).role == User.Role.PROGRAMME_OFFICE
    assert Event.objects.filter(
        action="user.role_changed", from_state="viewer", to_state="programme_office"
    ).exists()


def test_a_user_with_no_role_is_refused_with_a_clear_page(client, db, entra):
    person = entra.add_person("nobody@nhs.net", "No Role", [])

    response = _sign_in(client, entra, person)

    assert response.status_code == 403
    html = response.content.decode()
    assert "You do not have access to this portal" in html
    assert "Programme.Viewer" in html
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(entra_oid=person.oid).exists()


def test_an_account_from_another_tenant_is_refused(client, db, entra):
    person = entra.add_person(
        "guest@other.org", "Guest", ["Programme.Officer"], tid="0b1b2c3d-0000-4000-8000-000000000000"
    )
    response = _sign_in(client, entra, person)
    assert response.status_code == 400
    assert "another organisation" in response.content.decode()
    assert not User.objects.filter(entra_oid=person.oid).exists()


def test_a_state_mismatch_is_refused(client, db, entra):
    person = entra.add_person("jane@nhs.net", "Jane", ["Programme.Officer"])
    callback = follow_fake_authority(entra, _start(client), person)
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    query["state"] = "forged-state"

    response = client.get("/sign-in/entra/callback/?" + urlencode(query))

    assert response.status_code == 400
    assert "did not match a sign-in started here" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert not User.objects.filter(entra_oid=person.oid).exists()


def test_a_callback_without_a_started_sign_in_is_refused(client, db, entra):
    response = client.get("/sign-in/entra/callback/?code=abc&state=xyz")
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


def test_an_error_from_entra_is_shown_not_signed_in(client, db, entra):
    _start(client)
    state = client.session["entra_flow"]["flow"]["state"]
    response = client.get(
        "/sign-in/entra/callback/",
        {
            "error": "access_denied",
            "error_description": "AADSTS65004: User declined to consent.",
            "state": state,
        },
    )
    assert response.status_code == 400
    assert "access_denied" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_trust_admin_organisations_come_from_the_portal_assignment(client, db, entra):
    org = OrganisationFactory(ods_code="RJ1")
    other = OrganisationFactory(ods_code="RRV")
    person = entra.add_person("admin@gstt.nhs.uk", "Admin", ["Trust.Admin"])
    _sign_in(client, entra, person)
    user = User.objects.get(entra_oid=person.oid)
    assert user.role == User.Role.TRUST_ADMIN and not user.organisations.exists()
    user.organisations.add(org)  # the programme office assigns it in the portal
    client.post("/sign-out/")

    _sign_in(client, entra, person)

    assert list(user.organisations.all()) == [org]
    assert client.get("/organisations/RJ1/").status_code == 200
    assert client.get(f"/organisations/{other.ods_code}/").status_code == 404


def test_trust_admin_organisations_follow_a_configured_claim(client, db, entra, settings):
    settings.ENTRA = {**settings.ENTRA, "organisations_claim": "ods_codes"}
    org = OrganisationFactory(ods_code="RJ1")
    OrganisationFactory(ods_code="RRV")
    person = entra.add_person("admin@gstt.nhs.uk", "Admin", ["Trust.Admin"], ods_codes=["rj1", "ZZZ9"])

    _sign_in(client, entra, person)

    user = User.objects.get(entra_oid=person.oid)
    assert list(user.organisations.all()) == [org]  # unknown codes are ignored
    assert client.get("/organisations/RRV/").status_code == 404


def test_next_is_followed_only_within_the_portal(client, db, entra):
    person = entra.add_person("jane@nhs.net", "Jane", ["Programme.Officer"])
    assert _sign_in(client, entra, person, next_url="/waves/")["Location"] == "/waves/"
    client.post("/sign-out/")
    assert _sign_in(client, entra, person, next_url="https://evil.example/")["Location"] == "/"


def test_sign_out_clears_the_session_and_offers_entras_sign_out(client, db, entra):
    person = entra.add_person("jane@nhs.net", "Jane", ["Programme.Officer"])
    _sign_in(client, entra, person)

    response = client.post("/sign-out/")

    assert response["Location"] == "/sign-in/?signed_out=entra"
    assert "_auth_user_id" not in client.session and "entra_signed_in" not in client.session
    page = client.get(response["Location"]).content.decode()
    assert (
        f"https://login.microsoftonline.com/{entra.tenant_id}/oauth2/v2.0/logout?post_logout_redirect_uri="
        in page
    )


def test_a_deactivated_portal_account_is_refused(client, db, entra):
    person = entra.add_person("gone@nhs.net", "Gone", ["Programme.Officer"])
    UserFactory(username="gone", entra_oid=person.oid, is_active=False)
    response = _sign_in(client, entra, person)
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_local_passwords_are_off_with_entra_unless_allowed(client, db, entra, settings):
    UserFactory(username="jane", password="correct horse battery staple")
    page = client.get("/sign-in/").content.decode()
    assert "Sign in with Microsoft" in page and 'name="password"' not in page
    refused = client.post("/sign-in/", {"username": "jane", "password": "correct horse battery staple"})
    assert refused.status_code == 403

    settings.ENTRA = {**settings.ENTRA, "allow_local_sign_in": True}
    allowed = client.post("/sign-in/", {"username": "jane", "password": "correct horse battery staple"})
    assert allowed.status_code == 302


def test_without_entra_settings_local_accounts_work_and_entra_urls_do_not(client, db, settings):
    settings.ENTRA = None
    assert "Sign in with Microsoft" not in client.get("/sign-in/").content.decode()
    assert client.get("/sign-in/entra/").status_code == 404


@pytest.mark.parametrize("kind", ["pem", "pfx"])
def test_a_certificate_credential_signs_in(client, db, entra, settings, tmp_path, monkeypatch, kind):
    from tests.identity.certificates import make_client_certificate

    certificate, pem, pfx = make_client_certificate()
    entra.add_certificate(certificate)
    if kind == "pem":
        (tmp_path / "app.pem").write_bytes(pem)
        monkeypatch.setenv("ENTRA_CLIENT_CERTIFICATE", str(tmp_path / "app.pem"))
    else:
        (tmp_path / "app.pfx").write_bytes(pfx)
        monkeypatch.setenv("ENTRA_CLIENT_PFX", str(tmp_path / "app.pfx"))
        monkeypatch.setenv("ENTRA_CLIENT_PFX_PASSPHRASE", "pfx-pass")
    monkeypatch.setenv("ENTRA_TENANT_ID", entra.tenant_id)
    monkeypatch.setenv("ENTRA_CLIENT_ID", entra.client_id)
    from portal.entra import entra_settings

    settings.ENTRA = {**entra_settings(), "http_client": entra.session()}
    person = entra.add_person("cert@nhs.net", "Cert", ["Programme.Viewer"])

    response = _sign_in(client, entra, person)

    assert response.status_code == 302
    assert User.objects.get(entra_oid=person.oid).role == User.Role.VIEWER


def test_an_unreachable_entra_is_a_clear_page_not_a_crash(client, db, entra):
    entra.stop()  # nothing answers for login.microsoftonline.com now

    response = client.get("/sign-in/entra/")

    assert response.status_code == 503
    assert "cannot be reached just now" in response.content.decode()
