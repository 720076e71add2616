"""End to end with a real Celery worker and the configured broker: an approved wave from pre-stage to migrated
with each switcher — Exchange PowerShell (against the fake endpoint), the trust's webhook (a loopback receiver,
confirmed through the API as the trust's system would), and by hand (confirmed on the mailbox page)."""

import datetime as dt
import json
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from migrations_app.models import Mailbox, Wave
from migrations_app.services.execution import wave_tick
from migrations_app.services.tokens import token_create
from tests.execution_fixtures import approved_wave
from tests.switch_fixtures import switch_endpoint
from tests.webhook_receiver import allow_receiver, start_receiver

M = Mailbox.State
SECRET = "a-long-random-signing-secret-1234"


@pytest.fixture(autouse=True)
def zero_copy_time(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"throughput_bytes_per_s": 0}}


def _until(check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (
            OperationalError
        ):  # SQLite's shared in-memory test database: the worker holds the table; ask again
            pass
        time.sleep(0.2)
    return False


def _wave(org, method, count, **endpoint):
    return approved_wave(
        org,
        count,
        starts_in=dt.timedelta(minutes=-1),
        length=dt.timedelta(hours=2),
        source_endpoint=switch_endpoint(method, **endpoint),
    )


def _completed(wave):
    wave.refresh_from_db()
    return wave.status == Wave.Status.COMPLETED


def _switching(wave, count):
    return lambda: Mailbox.objects.filter(wave=wave, state=M.SWITCHING).count() == count


@pytest.mark.django_db(transaction=True)
def test_a_wave_is_switched_by_exchange_powershell_through_a_worker(real_broker, org_a, fake_exchange_ps):
    wave, mailboxes = _wave(org_a, "exchange-powershell", 6)
    fake_exchange_ps.add_mailboxes(m.email for m in mailboxes)

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert wave_tick()["claimed"] == 6
        assert _until(lambda: _completed(wave))

    assert set(Mailbox.objects.filter(wave=wave).values_list("state", "switch_status")) == {
        (M.MIGRATED, "switched")
    }
    for mailbox in mailboxes:
        assert fake_exchange_ps.routed_to(mailbox.email).endswith("@nhs.mail.onmicrosoft.com")
    switched = [c["identity"] for c in fake_exchange_ps.calls("Set-Mailbox")]
    assert sorted(switched) == sorted(m.email for m in mailboxes)  # each once


@pytest.mark.django_db(transaction=True)
def test_a_wave_is_switched_by_the_trusts_webhook_and_its_confirmations_through_a_worker(
    real_broker, org_a, admin_a, settings
):
    receiver, server = start_receiver([202])
    allow_receiver(settings, receiver.url)
    wave, mailboxes = _wave(org_a, "webhook", 3, switch_address=receiver.url, switch_secret=SECRET)
    token = token_create(user=admin_a, name="trust switch automation", scopes=["read", "write"],
                         expires_at=timezone.now() + dt.timedelta(days=1))[1]  # fmt: skip
    trust_system = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    try:
        with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            wave_tick()
            assert _until(_switching(wave, 3))
            assert not _completed(wave)  # nothing is migrated before its switch is confirmed
            for request in receiver.requests:  # the trust's automation switches, then says so
                asked = json.loads(request.body)
                response = trust_system.post(
                    asked["confirm"], {"reason": "routed"}, content_type="application/json"
                )
                assert response.status_code == 200
            assert _until(lambda: _completed(wave))
    finally:
        server.shutdown()

    assert len(receiver.requests) == 3
    assert set(Mailbox.objects.filter(wave=wave).values_list("state", "switch_status")) == {
        (M.MIGRATED, "switched")
    }


@pytest.mark.django_db(transaction=True)
def test_a_wave_is_switched_by_hand_and_confirmed_on_the_page_through_a_worker(
    real_broker, org_a, admin_a, client_for
):
    wave, mailboxes = _wave(org_a, "manual", 2)
    page = client_for(admin_a)

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        wave_tick()
        assert _until(_switching(wave, 2))
        for mailbox in mailboxes:
            assert "switch-checklist" in page.get(f"/mailboxes/{mailbox.pk}/").content.decode()
            assert page.post(f"/mailboxes/{mailbox.pk}/switch-confirm/").status_code == 302
        assert _until(lambda: _completed(wave))

    assert set(Mailbox.objects.filter(wave=wave).values_list("state", "switch_status")) == {
        (M.MIGRATED, "switched")
    }
