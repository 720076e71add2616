"""schemathesis against the live app: every operation of /api/schema/, called through a real server
(pytest-django's live_server) with a programme officer's token, must answer without a server error, with a
documented status and content type, and with a body that matches the schema.

25 examples per operation (half of those with a path aimed at a real object) keep the run near a minute; the seed is fixed so a failure reproduces."""

import itertools
import json

import httpx
import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from migrations_app.models import Decision, Endpoint, Event, ImportJob
from migrations_app.services.tokens import token_create
from migrations_app.services.webhooks import webhook_create
from tests.factories import MailboxFactory, OrganisationFactory, UserFactory
from tests.wave_fixtures import ready_mailboxes, wave_with

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _app_schema() -> dict:
    """What /api/schema/ serves (test_the_served_schema_is_the_one_tested checks that), made at collection
    so each operation is its own test."""
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_app_schema())
schema.config.generation.update(max_examples=25, deterministic=True)


@pytest.fixture
def live_api(live_server, transactional_db, settings):
    """A seeded programme, a live server, a programme officer's token with every scope, and the id of one
    real object per resource (so detail routes are exercised beyond 404)."""
    settings.API_THROTTLE_RATE = "1000000/min"  # the run sends hundreds of requests a minute
    settings.API_ANON_THROTTLE_RATE = "1000000/min"
    officer = UserFactory(username="schemathesis", role="programme_office")
    trust = OrganisationFactory(ods_code="RJ1")
    practice = OrganisationFactory(ods_code="A81001", kind="gp_practice", parent=trust)
    mailbox = ready_mailboxes(trust, 5)[0]
    MailboxFactory(organisation=practice, state="failed", last_error_code="auth")
    wave = wave_with(trust, status="proposed")
    decision = Decision.objects.create(wave=wave, organisation=trust, kind="go", actor=officer, reason="ok")
    event = Event.objects.create(action="mailbox.migrated", organisation=trust, subject="a@rj1.nhs.uk")
    endpoint = Endpoint.objects.create(name="source", kind="imap", role="source", secret="pw")
    job = ImportJob.objects.create(organisation=trust, filename="inventory.csv", status="succeeded")
    webhook = webhook_create(
        actor=officer,
        organisation=trust,
        url="https://itsm.example.nhs.uk/hook",
        secret="s" * 32,
        event_types=[],
    )
    _, raw = token_create(
        user=officer, name="schemathesis", scopes=["read", "write", "approve"], expires_at=None
    )
    known = {
        "/api/v1/waves/": wave.pk,
        "/api/v1/mailboxes/": mailbox.pk,
        "/api/v1/decisions/": decision.pk,
        "/api/v1/events/": event.pk,
        "/api/v1/endpoints/": endpoint.pk,
        "/api/v1/import-jobs/": job.pk,
        "/api/v1/organisations/{ods_code}/webhooks/": webhook.pk,
    }
    return live_server.url, {"Authorization": f"Bearer {raw}"}, known


def test_the_served_schema_is_the_one_tested(live_api):
    base_url, headers, _ = live_api
    served = httpx.get(f"{base_url}/api/schema/?format=json", headers=headers)
    assert served.status_code == 200 and served.json() == _app_schema()


_every_other = itertools.count()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_keeps_to_its_schema(case, live_api):
    base_url, headers, known = live_api
    parameters = case.path_parameters or {}
    if parameters and next(_every_other) % 2:  # half the examples aim at objects that exist
        if "ods_code" in parameters:
            parameters["ods_code"] = "RJ1"
        if "id" in parameters:
            prefix = next((p for p in known if case.operation.path.startswith(p)), None)
            parameters["id"] = known.get(prefix, parameters["id"])
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
