"""An Exchange 2013 (EWS) source endpoint through the API: host, service account and auth checked, the password
encrypted at rest and never returned, a source only; programme office only."""

from django.urls import reverse

from migrations_app.models import Endpoint
from tests.api.test_resources import post
from tests.test_admin import superuser_client  # noqa: F401 - fixture

EXCHANGE = {
    "name": "exchange-2013",
    "kind": "exchange",
    "role": "source",
    "address": "cas.nhs.internal",
    "username": "NHS\\svc-migration",
    "secret": "service-account-password",
    "options": {"auth": "ntlm", "include_archive": True, "max_connections": 6},
}


def test_an_exchange_endpoint_is_saved_with_its_password_encrypted_and_never_returned(api, officer):
    response = post(api(officer), "/api/v1/endpoints/", EXCHANGE)

    assert response.status_code == 201, response.content
    assert "service-account-password" not in response.content.decode()
    endpoint = Endpoint.objects.get(name="exchange-2013")
    assert endpoint.secret == "service-account-password" and endpoint.kind == Endpoint.Kind.EXCHANGE
    listed = api(officer).get("/api/v1/endpoints/").content.decode()
    assert "exchange-2013" in listed and "service-account-password" not in listed


def test_an_exchange_endpoint_must_be_a_source_with_an_account_and_a_known_auth(api, officer):
    response = post(
        api(officer),
        "/api/v1/endpoints/",
        {**EXCHANGE, "role": "target", "username": "", "secret": "", "options": {"auth": "kerberos"}},
    )

    assert response.status_code == 400
    text = response.content.decode()
    assert "only be a source" in text and "ApplicationImpersonation" in text and "ntlm or basic" in text
    assert not Endpoint.objects.exists()


def test_a_trust_admin_cannot_register_an_exchange_endpoint(api, admin_a):
    assert post(api(admin_a), "/api/v1/endpoints/", EXCHANGE).status_code == 403
    assert not Endpoint.objects.exists()


def test_the_admin_offers_the_exchange_kind_and_hides_the_password(superuser_client):  # noqa: F811
    endpoint = Endpoint.objects.create(name="ex", kind="exchange", role="source", secret="hunter2-exchange")
    html = superuser_client.get(
        reverse("admin:migrations_app_endpoint_change", args=[endpoint.pk])
    ).content.decode()
    assert 'value="exchange" selected' in html and "hunter2-exchange" not in html
