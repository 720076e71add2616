"""Retry by error code across the whole programme: one set-based service behind the failures page, the API and
a wave's own "retry these"; its number of queries does not grow with the mailboxes or the waves."""

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext

from migrations_app.models import Event, Mailbox
from migrations_app.services.failures import failures_retry
from tests.wave_fixtures import ready_mailboxes, wave_with

M = Mailbox.State


def failed_in_waves(organisation, waves: int, per_wave: int, code="AUTH_FAILED") -> list[int]:
    ids = []
    for n in range(waves):
        wave = wave_with(organisation, status="running", name=f"Evening {n}")
        made = ready_mailboxes(organisation, per_wave)
        Mailbox.objects.filter(pk__in=[m.pk for m in made]).update(
            wave=wave, state=M.FAILED, last_error_code=code, attempts=3, last_error_message="bad password"
        )
        ids += [m.pk for m in made]
    return ids


def test_it_retries_every_failure_with_the_code_in_every_wave(db, officer, org_a, org_b):
    in_waves = failed_in_waves(org_a, waves=3, per_wave=4) + failed_in_waves(org_b, waves=1, per_wave=2)
    [loose] = ready_mailboxes(org_a, 1)
    Mailbox.objects.filter(pk=loose.pk).update(state=M.FAILED, last_error_code="AUTH_FAILED")
    other = failed_in_waves(org_a, waves=1, per_wave=2, code="QUOTA_EXCEEDED")

    assert failures_retry(actor=officer, code="AUTH_FAILED", reason="passwords reset") == 15

    rows = dict(Mailbox.objects.values_list("pk", "state"))
    assert {rows[pk] for pk in in_waves} == {M.SCHEDULED}
    assert rows[loose.pk] == M.READY  # in no wave: ready to be planned
    assert {rows[pk] for pk in other} == {M.FAILED}
    assert not Mailbox.objects.filter(pk__in=in_waves).exclude(attempts=0, last_error_code="").exists()
    events = Event.objects.filter(action="mailbox.retried")
    assert sorted(events.values_list("mailbox_id", flat=True)) == sorted([*in_waves, loose.pk])
    assert set(events.values_list("actor_id", "message", "from_state")) == {
        (officer.pk, "passwords reset", "failed")
    }


def test_its_queries_do_not_grow_with_the_mailboxes_or_the_waves(db, officer, org_a):
    failed_in_waves(org_a, waves=1, per_wave=1, code="SMALL")
    failed_in_waves(org_a, waves=5, per_wave=20, code="LARGE")
    with CaptureQueriesContext(connection) as small:
        assert failures_retry(actor=officer, code="SMALL") == 1
    with CaptureQueriesContext(connection) as large:
        assert failures_retry(actor=officer, code="LARGE") == 100
    assert len(large) == len(small) <= 8


def test_it_refuses_a_trust_admin(db, admin_a, org_a):
    failed_in_waves(org_a, waves=1, per_wave=1)
    with pytest.raises(PermissionDenied):
        failures_retry(actor=admin_a, code="AUTH_FAILED")
    assert Mailbox.objects.filter(state=M.FAILED).count() == 1


def test_the_failures_page_button_retries_across_the_programme(db, client_for, officer, admin_a, org_a):
    failed_in_waves(org_a, waves=2, per_wave=2)
    assert client_for(admin_a).post("/failures/retry/", {"code": "AUTH_FAILED"}).status_code == 403
    response = client_for(officer).post("/failures/retry/", {"code": "AUTH_FAILED", "reason": "fixed"})
    assert response.status_code == 302
    assert Mailbox.objects.filter(state=M.SCHEDULED).count() == 4


def test_the_api_retries_across_the_programme(db, officer, admin_a, org_a):
    from django.test import Client

    from migrations_app.services.tokens import token_create

    failed_in_waves(org_a, waves=2, per_wave=3)

    def api(user):
        raw = token_create(user=user, name="s", scopes=["read", "write"], expires_at=None)[1]
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    url = "/api/v1/failures/retry/"
    assert api(admin_a).post(url, {"code": "AUTH_FAILED"}, content_type="application/json").status_code == 403
    response = api(officer).post(url, {"code": "AUTH_FAILED"}, content_type="application/json")
    assert response.status_code == 200 and response.json() == {"retried": 6}
