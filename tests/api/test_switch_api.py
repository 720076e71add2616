"""The switch through the API: a trust's automation confirms a webhook switch; the programme office switches a
mailbox back; the switch fields and filters. Same scoping as the pages."""

import datetime as dt

import pytest

from migrations_app.models import Event, Mailbox
from migrations_app.services.execution import mailbox_run_sync, wave_tick
from migrations_app.switchers import Routing
from migrations_app.switchers.webhook import WebhookSwitcher
from tests.execution_fixtures import approved_wave
from tests.switch_fixtures import switch_endpoint

M = Mailbox.State


def post(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


@pytest.fixture(autouse=True)
def instant_engine(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True}}


@pytest.fixture
def waiting(db, org_a, monkeypatch):
    """Two mailboxes whose webhook switch was sent (the HTTP side: tests/switchers/test_webhook.py)."""
    monkeypatch.setattr(
        WebhookSwitcher, "switch", lambda self, targets: {t.mailbox_id: Routing.PENDING for t in targets}
    )
    source = switch_endpoint("webhook", switch_address="https://switch.trust.example/")
    wave, mailboxes = approved_wave(org_a, 2, starts_in=dt.timedelta(minutes=-5), source_endpoint=source)
    wave_tick()
    for mailbox in mailboxes:
        mailbox_run_sync(mailbox_id=mailbox.pk)
    return wave, mailboxes


def test_the_trusts_automation_confirms_a_switch_and_the_catch_up_delta_follows(
    api, waiting, admin_a, django_capture_on_commit_callbacks
):
    wave, [mailbox, other] = waiting
    client = api(admin_a)
    listed = client.get(f"/api/v1/mailboxes/?wave={wave.pk}&state=switching&switch_status=requested").json()
    assert sorted(m["id"] for m in listed["results"]) == sorted([mailbox.pk, other.pk])
    assert listed["results"][0]["cutover_step"] == "switch"

    with django_capture_on_commit_callbacks(execute=True):
        body = post(client, f"/api/v1/mailboxes/{mailbox.pk}/switch-confirm/", {"reason": "job 4411"}).json()
    assert (body["state"], body["switch_status"]) == (M.CUTOVER, "switched")
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED  # the catch-up delta and verification ran (eager task)
    assert Event.objects.filter(mailbox_id=mailbox.pk, action="mailbox.switched", actor=admin_a).exists()

    again = post(client, f"/api/v1/mailboxes/{mailbox.pk}/switch-confirm/")
    assert again.status_code == 409 and "only a mailbox waiting for its switch" in again.json()["detail"]


def test_another_organisations_system_cannot_confirm_and_a_viewer_may_not(api, waiting, admin_b, viewer):
    wave, [mailbox, _] = waiting
    assert post(api(admin_b), f"/api/v1/mailboxes/{mailbox.pk}/switch-confirm/").status_code == 404
    assert post(api(viewer), f"/api/v1/mailboxes/{mailbox.pk}/switch-confirm/").status_code == 403
    mailbox.refresh_from_db()
    assert mailbox.state == M.SWITCHING


def test_switching_back_is_for_the_programme_office_with_a_reason(
    api, db, org_a, officer, admin_a, fake_exchange_ps, django_capture_on_commit_callbacks
):
    source = switch_endpoint("exchange-powershell")
    wave, [mailbox] = approved_wave(org_a, 1, starts_in=dt.timedelta(minutes=-5), source_endpoint=source)
    fake_exchange_ps.add_mailbox(mailbox.email)
    wave_tick()
    mailbox_run_sync(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.switch_status) == (M.MIGRATED, "switched")

    assert post(api(admin_a), f"/api/v1/mailboxes/{mailbox.pk}/unswitch/", {"reason": "x"}).status_code == 403
    no_reason = post(api(officer), f"/api/v1/mailboxes/{mailbox.pk}/unswitch/")
    assert no_reason.status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        body = post(api(officer), f"/api/v1/mailboxes/{mailbox.pk}/unswitch/", {"reason": "EPR fails"}).json()
    assert body["switch_status"] == "unswitching"
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.switch_status, mailbox.wave_id) == (M.READY, "unswitched", None)
    assert fake_exchange_ps.routed_to(mailbox.email) is None


def test_an_endpoints_switch_secret_is_write_only_and_a_webhook_url_must_be_public(api, officer, db):
    client = api(officer)
    data = {
        "name": "Trust switch",
        "kind": "simulated",
        "role": "source",
        "switch_method": "webhook",
        "switch_address": "https://10.0.0.5/switch",
        "switch_secret": "a-long-random-signing-secret-1234",
        "routing_domain": "nhs.mail.onmicrosoft.com",
    }
    refused = post(client, "/api/v1/endpoints/", data)
    assert refused.status_code == 400
    assert {
        "field": "switch_address",
        "message": "That address is on an internal network",
        "code": "invalid",
    } in (refused.json()["errors"])

    created = post(
        client, "/api/v1/endpoints/", {**data, "switch_address": "https://switch.trust.example/hook"}
    ).json()
    assert created["has_switch_secret"] is True and "switch_secret" not in created
    assert created["switch_method"] == "webhook"
