"""End to end: an approved wave runs to all-migrated through a real Celery worker and the configured broker
(Redis in CI), with every mailbox transition in the Event table."""

import datetime as dt
import time

import pytest
from celery.contrib.testing.worker import start_worker

from migrations_app.models import Event, Mailbox, Wave
from migrations_app.services.execution import wave_tick
from tests.execution_fixtures import CUTOVER_STEPS, approved_wave, transitions

M = Mailbox.State


@pytest.mark.django_db(transaction=True)
def test_an_approved_wave_runs_to_all_migrated_through_a_worker(real_broker, settings, org_a):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"throughput_bytes_per_s": 0}}  # zero copy time
    wave, mailboxes = approved_wave(
        org_a, 6, starts_in=dt.timedelta(minutes=-1), length=dt.timedelta(hours=2)
    )

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert wave_tick()["claimed"] == 6  # queues the work on commit; the worker takes it from here
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            wave.refresh_from_db()
            if wave.status == Wave.Status.COMPLETED:
                break
            time.sleep(0.2)

    assert wave.status == Wave.Status.COMPLETED
    assert set(Mailbox.objects.filter(wave=wave).values_list("state", flat=True)) == {M.MIGRATED}
    for mailbox in mailboxes:
        assert transitions(mailbox) == [
            (M.SCHEDULED, M.SYNCING),
            (M.SYNCING, M.SYNCED),
            (M.SYNCED, M.CUTOVER),
            *CUTOVER_STEPS,  # final delta, switch requested, switched
            (M.CUTOVER, M.VERIFYING),
            (M.VERIFYING, M.MIGRATED),
        ]
    assert Event.objects.filter(wave_id=wave.pk, action="wave.completed").count() == 1
