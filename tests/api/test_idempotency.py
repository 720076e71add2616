"""Idempotency-Key on POST: a retry gets the first response and the work is done once; a reused key with
another request is refused; keys are per user, expire, and a duplicate in flight is told to wait."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from migrations_app.models import IdempotencyKey, ImportJob, Organisation
from migrations_app.services.idempotency import (
    idempotency_keys_purge,
    idempotency_release,
    idempotency_reserve,
)
from tests.api.test_resources import enrolment, row


def post(client, url, data, key, **extra):
    return client.post(url, data, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def test_a_retry_gets_the_first_response_and_enrols_once(api, admin_a):
    client = api(admin_a)
    first = post(client, "/api/v1/organisations/", enrolment(), "enrol-rxx-1")
    second = post(client, "/api/v1/organisations/", enrolment(), "enrol-rxx-1")
    assert first.status_code == second.status_code == 201
    assert second.content == first.content and second["Content-Type"] == first["Content-Type"]
    assert second["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Organisation.objects.filter(ods_code="RXX").count() == 1
    # without the key the same request really runs again, and fails as a duplicate: 409 conflict
    again = client.post("/api/v1/organisations/", enrolment(), content_type="application/json")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_a_replayed_job_keeps_its_location_and_queues_no_second_job(api, admin_a, org_a, settings):
    settings.API_BULK_INLINE_MAX_ROWS = 1
    settings.CELERY_TASK_ALWAYS_EAGER = False  # keep the job queued: the test is about the response
    client = api(admin_a)
    url = "/api/v1/organisations/RJ1/mailboxes/bulk"
    first = post(client, url, [row(1), row(2)], "bulk-1")
    second = post(client, url, [row(1), row(2)], "bulk-1")
    assert first.status_code == second.status_code == 202
    assert second["Location"] == first["Location"] and second.json() == first.json()
    assert ImportJob.objects.count() == 1


def test_the_same_key_with_another_body_or_path_is_refused(api, admin_a, org_a):
    client = api(admin_a)
    assert post(client, "/api/v1/organisations/", enrolment("RXX"), "k1").status_code == 201
    other_body = post(client, "/api/v1/organisations/", enrolment("RYY"), "k1")
    assert other_body.status_code == 422 and other_body["Content-Type"] == "application/problem+json"
    assert other_body.json()["code"] == "idempotency_key_reused"
    other_path = post(client, "/api/v1/organisations/RJ1/mailboxes/bulk", enrolment("RXX"), "k1")
    assert other_path.json()["code"] == "idempotency_key_reused"
    assert not Organisation.objects.filter(ods_code="RYY").exists()


def test_keys_are_per_user(api, admin_a, admin_b):
    assert post(api(admin_a), "/api/v1/organisations/", enrolment(), "shared-key").status_code == 201
    # admin_b's request with admin_a's key runs as admin_b's own (and fails: the code is taken), no replay
    response = post(api(admin_b), "/api/v1/organisations/", enrolment(), "shared-key")
    assert response.status_code == 409 and not response.has_header("Idempotent-Replayed")
    assert not admin_b.organisations.filter(ods_code="RXX").exists()


def test_a_duplicate_of_a_request_in_flight_gets_409(api, admin_a):
    client = api(admin_a)  # (making the token first: the reservation below must be the only one)
    body = enrolment()
    first = post(client, "/api/v1/organisations/", body, "busy")
    IdempotencyKey.objects.filter(key="busy").update(response_status=None)  # as if still running
    response = post(client, "/api/v1/organisations/", body, "busy")
    assert response.status_code == 409 and response.json()["code"] == "idempotency_key_in_flight"
    assert response["Retry-After"] == "1" and first.status_code == 201


def test_a_refused_request_does_not_hold_its_key(api, viewer, admin_a):
    response = post(api(viewer), "/api/v1/organisations/", enrolment(), "mine")
    assert response.status_code == 403
    assert not IdempotencyKey.objects.exists()
    read_only = api(admin_a, scopes=("read",))
    assert post(read_only, "/api/v1/organisations/", enrolment(), "mine").status_code == 403
    assert post(api(admin_a), "/api/v1/organisations/", enrolment(), "mine").status_code == 201


def test_a_bad_key_is_a_problem(api, admin_a):
    response = post(api(admin_a), "/api/v1/organisations/", enrolment(), "x" * 256)
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_invalid"
    assert not Organisation.objects.filter(ods_code="RXX").exists()


def test_unauthenticated_requests_with_a_key_are_401_and_keep_nothing(db):
    response = post(Client(), "/api/v1/organisations/", enrolment(), "anon")
    assert response.status_code == 401 and not IdempotencyKey.objects.exists()


def test_keys_expire_and_are_purged(api, admin_a):
    client = api(admin_a)
    assert post(client, "/api/v1/organisations/", enrolment("RXX"), "old").status_code == 201
    IdempotencyKey.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    # an expired key is free again, even for another request
    assert post(client, "/api/v1/organisations/", enrolment("RYY"), "old").status_code == 201
    IdempotencyKey.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert idempotency_keys_purge() == 1 and not IdempotencyKey.objects.exists()


def test_an_abandoned_reservation_stops_holding_its_key(admin_a, settings):
    reserve = {"user": admin_a, "key": "k", "fingerprint": "f", "method": "POST", "path": "/api/v1/x"}
    assert idempotency_reserve(**reserve).outcome == "run"
    assert idempotency_reserve(**reserve).outcome == "in_flight"
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(hours=1))
    assert idempotency_reserve(**reserve).outcome == "run"


def test_only_one_of_concurrent_duplicates_runs(postgres, transactional_db, admin_a):
    """Eight threads reserve the same key at the same moment, each on its own database connection: the
    unique constraint lets exactly one run."""
    reserve = {"user": admin_a, "key": "race", "fingerprint": "f", "method": "POST", "path": "/api/v1/x"}
    barrier = threading.Barrier(8)
    outcomes = []

    def attempt():
        try:
            barrier.wait()
            outcomes.append(idempotency_reserve(**reserve).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["in_flight"] * 7 + ["run"]
    idempotency_release(row=IdempotencyKey.objects.get(key="race"))
    assert not IdempotencyKey.objects.exists()


def test_concurrent_duplicate_posts_enrol_once(postgres, transactional_db, admin_a, token_for):
    raw = token_for(admin_a)
    barrier = threading.Barrier(4)
    responses = []

    def attempt():
        try:
            client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
            barrier.wait()
            responses.append(post(client, "/api/v1/organisations/", enrolment(), "together"))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    assert len({r.content for r in responses if r.status_code == 201}) == 1
    assert Organisation.objects.filter(ods_code="RXX").count() == 1


@pytest.mark.parametrize("path", ["/api/v1/organisations/", "/api/v1/waves/{id}/approve/"])
def test_the_schema_describes_the_header_on_posts(client, admin_a, path):
    client.force_login(admin_a)
    schema = client.get("/api/schema/?format=json").json()
    names = [p["name"] for p in schema["paths"][path]["post"]["parameters"]]
    assert "Idempotency-Key" in names
    assert "Idempotency-Key" not in [
        p["name"] for p in schema["paths"]["/api/v1/mailboxes/"]["get"]["parameters"]
    ]


def test_a_refused_or_invalid_request_is_not_kept_against_its_key(api, admin_a):
    client = api(admin_a)
    invalid = post(client, "/api/v1/organisations/", {**enrolment(), "kind": "nonsense"}, "enrol-fix-1")
    assert invalid.status_code == 400
    corrected = post(client, "/api/v1/organisations/", enrolment(), "enrol-fix-1")  # the same key, fixed body
    assert corrected.status_code == 201 and not corrected.has_header("Idempotent-Replayed")
    assert post(client, "/api/v1/organisations/", enrolment(), "enrol-fix-1")["Idempotent-Replayed"] == "true"
