"""A Graph (Exchange Online) endpoint through the API: tenant, client id and credential checked, secret kept."""

import uuid

from migrations_app.models import Endpoint
from tests.api.test_resources import post

TENANT, CLIENT = str(uuid.uuid4()), str(uuid.uuid4())


def test_a_graph_endpoint_is_saved_with_its_secret_encrypted(api, officer):
    response = post(
        api(officer),
        "/api/v1/endpoints/",
        {
            "name": "exo",
            "kind": "graph",
            "role": "target",
            "address": TENANT,
            "username": CLIENT,
            "secret": "client-secret-value",
            "options": {"import_mode": "mime"},
        },
    )
    assert response.status_code == 201, response.content
    assert "client-secret-value" not in response.content.decode()
    assert Endpoint.objects.get(name="exo").secret == "client-secret-value"


def test_a_graph_endpoint_without_a_tenant_or_with_common_is_refused_with_reasons(api, officer):
    response = post(
        api(officer),
        "/api/v1/endpoints/",
        {
            "name": "exo",
            "kind": "graph",
            "role": "target",
            "address": "common",
            "username": "portal",
            "options": {"import_mode": "eml"},
        },
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "tenant ID" in text and "client) ID" in text and "import_mode" in text
    assert not Endpoint.objects.exists()


def test_a_certificate_key_needs_its_thumbprint(api, officer):
    key = "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n"
    response = post(
        api(officer),
        "/api/v1/endpoints/",
        {
            "name": "exo",
            "kind": "graph",
            "role": "target",
            "address": TENANT,
            "username": CLIENT,
            "secret": key,
        },
    )
    assert response.status_code == 400 and "certificate_thumbprint" in response.content.decode()


def _graph(options):
    return {
        "name": "exo",
        "kind": "graph",
        "role": "target",
        "address": TENANT,
        "username": CLIENT,
        "secret": "client-secret-value",
        "options": options,
    }


def test_a_graph_url_to_an_internal_address_is_refused(api, officer):
    for url in (
        "http://graph.example.org/v1.0",
        "https://169.254.169.254/",
        "https://[::1]/",
        "https://10.0.0.8/",
    ):
        response = post(api(officer), "/api/v1/endpoints/", _graph({"graph_url": url}))
        assert response.status_code == 400 and "graph_url" in response.content.decode(), url
    assert not Endpoint.objects.exists()
    ok = post(api(officer), "/api/v1/endpoints/", _graph({"graph_url": "https://graph.microsoft.com/v1.0"}))
    assert ok.status_code == 201, ok.content


def test_an_authority_host_or_ews_url_to_an_internal_address_is_refused(api, officer):
    """Every option the server will connect to is held to the same rules when saved (and again when used)."""
    for options in (
        {"authority_host": "169.254.169.254"},
        {"authority_host": "login.example.org:6379"},
        {"service_endpoint": "https://10.0.0.8/EWS/Exchange.asmx"},
        {"service_endpoint": "http://cas.example.org/EWS/Exchange.asmx"},
    ):
        response = post(api(officer), "/api/v1/endpoints/", _graph(options))
        name = next(iter(options))
        assert response.status_code == 400 and name in response.content.decode(), options
    assert not Endpoint.objects.exists()
    ok = post(api(officer), "/api/v1/endpoints/", _graph({"authority_host": "login.microsoftonline.us"}))
    assert ok.status_code == 201, ok.content


def test_a_ca_file_must_be_in_the_configured_directory(api, officer, settings, tmp_path):
    settings.ENDPOINT_CA_DIR = str(tmp_path)
    outside = post(api(officer), "/api/v1/endpoints/", _graph({"ca_file": "/etc/shadow"}))
    climbing = post(api(officer), "/api/v1/endpoints/", _graph({"ca_file": f"{tmp_path}/../../etc/passwd"}))
    assert (
        outside.status_code == climbing.status_code == 400 and "ENDPOINT_CA_DIR" in outside.content.decode()
    )
    inside = post(api(officer), "/api/v1/endpoints/", _graph({"ca_file": str(tmp_path / "trust-ca.pem")}))
    assert inside.status_code == 201, inside.content
