"""Acting on running work through the API: a mailbox paused, resumed, cancelled, retried, rolled back; a
wave's failures retried by code; its carried-over mailboxes placed in another wave. Same scoping as pages."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.models import Event, Mailbox, Wave
from migrations_app.services.execution import wave_tick
from tests.execution_fixtures import approved_wave
from tests.wave_fixtures import wave_with

M = Mailbox.State


def post(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


@pytest.fixture
def running(db, org_a):
    now = timezone.now()
    wave, mailboxes = approved_wave(org_a, 3, now=now, starts_in=dt.timedelta(hours=2))
    wave_tick(now=now)
    Mailbox.objects.filter(wave=wave).update(state=M.SCHEDULED)
    return wave, mailboxes


def test_a_trust_admin_pauses_and_resumes_their_mailbox(api, running, admin_a):
    wave, [mailbox, *_] = running
    client = api(admin_a)
    body = post(client, f"/api/v1/mailboxes/{mailbox.pk}/pause/", {"reason": "on leave"}).json()
    assert body["paused"] is True and body["state"] == M.SCHEDULED
    again = post(client, f"/api/v1/mailboxes/{mailbox.pk}/pause/")
    assert again.status_code == 409 and again["Content-Type"] == "application/problem+json"
    assert again.json()["code"] == "conflict" and "already paused" in again.json()["detail"]
    assert post(client, f"/api/v1/mailboxes/{mailbox.pk}/resume/").json()["paused"] is False
    assert Event.objects.filter(mailbox_id=mailbox.pk, action="mailbox.paused", actor=admin_a).exists()


def test_another_organisations_admin_gets_404_and_a_viewer_403(api, running, admin_b, viewer):
    wave, [mailbox, *_] = running
    assert post(api(admin_b), f"/api/v1/mailboxes/{mailbox.pk}/pause/").status_code == 404
    response = post(api(viewer), f"/api/v1/mailboxes/{mailbox.pk}/cancel/")
    assert response.status_code == 403
    mailbox.refresh_from_db()
    assert (mailbox.paused, mailbox.wave_id) == (False, wave.pk)


def test_a_read_only_token_cannot_act(api, running, admin_a):
    wave, [mailbox, *_] = running
    response = post(api(admin_a, scopes=("read",)), f"/api/v1/mailboxes/{mailbox.pk}/pause/")
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_cancel_and_rollback_through_the_api(api, running, admin_a):
    wave, [one, two, _] = running
    client = api(admin_a)
    assert post(client, f"/api/v1/mailboxes/{one.pk}/cancel/").json()["state"] == M.READY
    Mailbox.objects.filter(pk=two.pk).update(state=M.MIGRATED)
    refused = post(client, f"/api/v1/mailboxes/{two.pk}/rollback/")
    assert refused.status_code == 400 and "reason" in refused.json()["detail"]
    body = post(client, f"/api/v1/mailboxes/{two.pk}/rollback/", {"reason": "calendar problems"}).json()
    assert (body["state"], body["wave"]) == (M.READY, None)


def test_retry_failures_by_code_is_for_the_programme_office(api, running, officer, admin_a):
    wave, mailboxes = running
    Mailbox.objects.filter(wave=wave).update(state=M.FAILED, last_error_code="AUTH_FAILED")
    url = f"/api/v1/waves/{wave.pk}/retry-failures/"
    assert post(api(admin_a), url, {"code": "AUTH_FAILED"}).status_code == 403
    assert post(api(officer), url, {}).status_code == 400  # which code?
    assert post(api(officer), url, {"code": "AUTH_FAILED"}).json() == {"retried": 3}
    assert set(Mailbox.objects.filter(wave=wave).values_list("state", flat=True)) == {M.SCHEDULED}


def test_carried_over_mailboxes_are_placed_through_the_api(api, db, org_a, officer, admin_a):
    now = timezone.now()
    wave, mailboxes = approved_wave(org_a, 2, now=now)
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    wave_tick(now=wave.ends_at + dt.timedelta(minutes=1))  # the window closed with both unfinished
    target = wave_with(org_a, name="Next", status=Wave.Status.DRAFT, day=dt.date(2027, 2, 2))
    url = f"/api/v1/waves/{wave.pk}/place-carried-over/"
    assert post(api(admin_a), url, {"target_wave": target.pk, "confirm": True}).status_code == 403
    body = post(api(officer), url, {"target_wave": target.pk, "confirm": True}).json()
    assert body["placed"] is True
    assert Mailbox.objects.filter(wave=target, state=M.READY).count() == 2
    again = post(api(officer), url, {"target_wave": target.pk, "confirm": True})
    assert again.status_code == 400 and "no carried-over" in again.json()["detail"]
