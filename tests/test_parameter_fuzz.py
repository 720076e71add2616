"""Odd input never answers 500: every route (pages and API), every parameter name the code reads, a table of odd
values (NUL bytes, non-numbers where ids go, far-future and far-past dates, numbers past 64 bits, deeply nested
and NUL-holding JSON), as a programme officer and as another trust's admin. A 500 anywhere fails the test with
the route and the value; a NUL byte is a 400 everywhere."""

import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

from migrations_app.models import ClosedPeriod, Decision, Endpoint, Event, ImportJob
from migrations_app.services.tokens import token_create
from tests.wave_fixtures import ready_mailboxes, wave_with

APP = Path(__file__).resolve().parents[1] / "migrations_app"

ODD_VALUES = [
    "x\x00y",
    "abc",
    "-1",
    "99999999999999999999",
    "9999-12-31",
    "0001-01-01",
    "1e308",
    "' OR 1=1 --",
]
NUL = "x\x00y"
FORM = "application/x-www-form-urlencoded"


def _parameter_names() -> list[str]:
    """Every name the views read from GET/POST or query_params/data, and every form field name."""
    names: set[str] = set()
    pattern = re.compile(r"""(?:GET|POST|query_params|data)(?:\.get|\.getlist)?[\(\[]\s*["'](\w+)["']""")
    for path in APP.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        names.update(pattern.findall(path.read_text()))
    import django.forms

    from migrations_app import forms as portal_forms

    for module in [portal_forms]:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, django.forms.BaseForm):
                names.update(getattr(value, "base_fields", {}).keys())
    names.update({"q", "wave", "state", "organisation", "target", "start", "end", "page", "cursor", "after"})
    return sorted(names)


def _routes() -> list[str]:
    """Every URL pattern as a pattern string, without DRF's format-suffix duplicates or the Django admin."""

    def walk(patterns, prefix=""):
        for pattern in patterns:
            text = str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if text.startswith("admin"):
                    continue
                yield from walk(pattern.url_patterns, prefix + text)
            else:
                yield prefix + text

    return [r for r in walk(get_resolver().url_patterns) if "format" not in r]


def _fill(route: str, ids: dict[str, int]) -> str:
    path = route.replace("^", "").replace("$", "").replace("\\", "")
    section = path.split("/")[2] if path.startswith("api/") else path.split("/")[0]
    pk = ids.get(section, ids["waves"])
    path = re.sub(r"\(\?P<pk>[^)]*\)", str(pk), path)
    path = re.sub(r"\(\?P<ods_code>[^)]*\)", "RJ1", path)
    path = re.sub(r"<int:pk>", str(pk), path)
    path = re.sub(r"<ods:ods_code>|<str:ods_code>", "RJ1", path)
    path = path.replace("<str:action>", "go").replace("<str:kind>", "inventory")
    path = path.replace("<str:moment>", "before").replace("<str:token>", "not-a-token")
    path = re.sub(r"<[^>]+>", "x", path)
    return "/" + path


@pytest.fixture
def programme(org_a, org_b, officer, admin_a, settings):
    settings.API_THROTTLE_RATE = settings.API_ANON_THROTTLE_RATE = "1000000/min"
    settings.SIGN_IN_MAX_FAILURES = settings.SIGN_IN_MAX_FAILURES_PER_ADDRESS = 1_000_000
    mailboxes = ready_mailboxes(org_a, 3)
    wave = wave_with(org_a, status="proposed", proposed_by=officer)
    decision = Decision.objects.create(wave=wave, organisation=org_a, kind="go", actor=admin_a, reason="ok")
    event = Event.objects.create(action="mailbox.migrated", organisation=org_a, mailbox=mailboxes[0])
    job = ImportJob.objects.create(organisation=org_a, filename="inventory.csv", status="succeeded")
    endpoint = Endpoint.objects.create(name="source", kind="imap", role="source", secret="pw")
    token, _ = token_create(user=officer, name="fuzz", scopes=["read", "write", "approve"], expires_at=None)
    import datetime as dt

    closed = ClosedPeriod.objects.create(
        kind="freeze", starts_on=dt.date(2026, 12, 20), ends_on=dt.date(2027, 1, 2), name="Christmas"
    )
    return {
        "waves": wave.pk,
        "mailboxes": mailboxes[0].pk,
        "decisions": decision.pk,
        "events": event.pk,
        "import-jobs": job.pk,
        "imports": job.pk,
        "endpoints": endpoint.pk,
        "api-tokens": token.pk,
        "settings": closed.pk,
    }


def _client(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _nested(depth: int) -> str:
    return '{"a": [' * depth + '"leaf"' + "]}" * depth


def test_no_route_answers_500_to_odd_parameters(programme, officer, admin_b):
    names, routes = _parameter_names(), _routes()
    assert len(routes) > 80 and len(names) > 30  # the test really covers the portal
    failures = []
    for user, values in ((officer, ODD_VALUES), (admin_b, ODD_VALUES[:3])):
        client = _client(user)
        for route in routes:
            path = _fill(route, programme)
            for value in values:
                params = dict.fromkeys(names, value)
                for method in ("get", "post"):
                    if method == "get":
                        response = client.get(path, params)
                    else:  # as a browser posts a form
                        response = client.post(path, urlencode(params), content_type=FORM)
                    if "_auth_user_id" not in client.session:  # the sign-out route did its job
                        client.force_login(user)
                    if response.status_code >= 500:
                        failures.append(f"{method.upper()} {path} {value!r} as {user.username}")
                    elif value == NUL and response.status_code != 400:
                        failures.append(f"{method.upper()} {path} NUL -> {response.status_code}")
    assert failures == []


def test_no_api_route_answers_500_to_odd_json(programme, officer):
    client = _client(officer)
    bodies = [
        _nested(5000),
        json.dumps({"name": "x\x00y", "reason": "a\x00", "organisation": "RJ1"}),
        json.dumps({"rows": [{"email": "a@b.nhs.uk", "size_bytes": 10**30}]}),
        "[" * 100_000,
        "not json",
    ]
    failures = []
    for route in _routes():
        if not route.startswith("api/v1/"):
            continue
        path = _fill(route, programme)
        for body in bodies:
            for method in ("post", "patch", "put"):
                response = getattr(client, method)(path, body, content_type="application/json")
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {path} {body[:40]!r}")
    assert failures == []


@pytest.mark.parametrize("target", ["abc", "1.5", "-3", "99999999999999999999", ""])
@pytest.mark.parametrize("action", ["place-carried-over", "move", "move-mailbox"])
def test_a_target_that_is_not_a_wave_id_is_a_400(officer, org_a, action, target):
    wave = wave_with(org_a)
    response = _client(officer).post(f"/waves/{wave.pk}/{action}/", {"target": target, "organisation": "RJ1"})
    assert response.status_code == 400 and "target must be the id" in response.content.decode()


def test_a_nul_byte_is_a_400_with_a_message(client, org_a):
    response = client.post("/when-does-my-mailbox-move/", {"email": "a\x00@rj1.nhs.uk"})
    assert response.status_code == 400 and "NUL" in response.content.decode()
    api = Client().get("/api/v1/mailboxes/", {"q": "a\x00"})
    assert api.status_code == 400 and api["Content-Type"] == "application/problem+json"


def test_a_body_over_the_limit_is_a_413_problem(client, settings, admin_a):
    settings.API_MAX_BODY_BYTES = 1000
    client.force_login(admin_a)
    # before the Idempotency-Key middleware, which keeps the body it reads
    response = client.post(
        "/api/v1/organisations/RJ1/mailboxes/bulk",
        "x" * 2000,
        content_type="text/csv",
        HTTP_IDEMPOTENCY_KEY="bulk-1",
    )
    assert response.status_code == 413 and response["Content-Type"] == "application/problem+json"
    assert "1,000 bytes" in response.json()["detail"]


def test_a_chunked_body_without_a_length_is_a_411(client, admin_a):
    client.force_login(admin_a)
    response = client.post(
        "/api/v1/organisations/RJ1/mailboxes/bulk",
        "email\n",
        content_type="text/csv",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_IDEMPOTENCY_KEY="bulk-2",
    )
    assert response.status_code == 411 and response["Content-Type"] == "application/problem+json"
