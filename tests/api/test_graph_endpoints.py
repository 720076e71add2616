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
