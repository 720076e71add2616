"""A running wave with nothing left to do is completed at once (by the run that ends its last mailbox, the
beat's tick as the backstop), never left "Running, moving now 0"; a retry of its failures runs it again while
its window is open and carries them over once it has closed."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from migrations_app.models import Event, Mailbox, Wave
from migrations_app.services.execution import (
    mailbox_claim,
    mailbox_pause,
    mailbox_retry,
    mailbox_run_cutover,
    wave_tick,
)
from migrations_app.services.execution.completion import waves_complete_if_done
from migrations_app.services.failures import failures_retry
from tests.execution_fixtures import approved_wave

M = Mailbox.State
W = Wave.Status


@pytest.fixture(autouse=True)
def instant_engine(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True, "chunk_bytes": 100_000}}


def running_wave(org, count, **kwargs):
    wave, mailboxes = approved_wave(org, count, **kwargs)
    Wave.objects.filter(pk=wave.pk).update(status=W.RUNNING)
    wave.refresh_from_db()
    return wave, mailboxes


def fail(mailbox, code="AUTH_FAILED"):
    Mailbox.objects.filter(pk=mailbox.pk).update(
        state=M.FAILED, last_error_code=code, last_error_message="bad password", needed_attention=True
    )


def test_the_run_that_ends_the_last_mailbox_completes_the_wave(db, org_a):
    wave, [first, last] = running_wave(org_a, 2)
    fail(first)
    Mailbox.objects.filter(pk=last.pk).update(state=M.SYNCED)
    [claimed] = mailbox_claim(wave=wave, phase="cutover")
    assert claimed == last.pk

    mailbox_run_cutover(mailbox_id=last.pk)

    wave.refresh_from_db()
    assert wave.status == W.COMPLETED  # no tick needed
    event = Event.objects.get(wave_id=wave.pk, action="wave.completed")
    assert (event.from_state, event.to_state) == (W.RUNNING, W.COMPLETED)
    assert event.data == {"migrated": 1, "failed": 1, "carried_over": 0}
    assert event.message == "nothing left to do: 1 migrated, 1 failed (see failures)"


def test_the_tick_completes_a_finished_wave_once(db, org_a):
    wave, mailboxes = running_wave(org_a, 3)
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes[:2]]).update(state=M.MIGRATED)
    fail(mailboxes[2], code="OVER_QUOTA")

    assert wave_tick()["completed"] == 1
    assert wave_tick()["completed"] == 0
    wave.refresh_from_db()
    assert wave.status == W.COMPLETED
    assert Event.objects.filter(wave_id=wave.pk, action="wave.completed").count() == 1


@pytest.mark.parametrize("state", [M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.SWITCHING, M.VERIFYING])
def test_a_wave_with_a_mailbox_still_to_move_keeps_running(db, org_a, state):
    wave, [done, waiting] = running_wave(org_a, 2)
    Mailbox.objects.filter(pk=done.pk).update(state=M.MIGRATED)
    Mailbox.objects.filter(pk=waiting.pk).update(state=state)
    assert waves_complete_if_done() == []
    wave.refresh_from_db()
    assert wave.status == W.RUNNING


def test_a_paused_mailbox_keeps_its_wave_running(db, org_a, officer):
    wave, [done, held] = running_wave(org_a, 2)
    Mailbox.objects.filter(pk=done.pk).update(state=M.MIGRATED)
    mailbox_pause(mailbox=held, actor=officer)
    assert waves_complete_if_done() == []


def test_completing_many_waves_takes_the_same_queries_as_one(db, org_a):
    def finished_waves(n):
        ids = []
        for _ in range(n):
            wave, mailboxes = running_wave(org_a, 2)
            Mailbox.objects.filter(pk=mailboxes[0].pk).update(state=M.MIGRATED)
            fail(mailboxes[1])
            ids.append(wave.pk)
        return ids

    one = finished_waves(1)
    with CaptureQueriesContext(connection) as few:
        assert waves_complete_if_done(wave_ids=one) == one
    many = finished_waves(6)
    with CaptureQueriesContext(connection) as lots:
        assert waves_complete_if_done(wave_ids=many) == sorted(many)
    assert len(lots) == len(few)


def test_retrying_the_failures_of_a_completed_wave_runs_it_again_at_once(
    db, org_a, officer, django_capture_on_commit_callbacks, monkeypatch
):
    pumped = []
    monkeypatch.setattr("migrations_app.services.failures.wave_pump_later", pumped.append)
    wave, [done, failed] = running_wave(org_a, 2)
    Mailbox.objects.filter(pk=done.pk).update(state=M.MIGRATED)
    fail(failed)
    assert waves_complete_if_done() == [wave.pk]

    with django_capture_on_commit_callbacks(execute=True):
        assert failures_retry(actor=officer, code="AUTH_FAILED", wave=wave) == 1

    wave.refresh_from_db()
    failed.refresh_from_db()
    assert wave.status == W.RUNNING and failed.state == M.SCHEDULED and not failed.carried_over
    assert pumped == [wave.pk]  # queued now, not at the next tick
    reopened = Event.objects.get(wave_id=wave.pk, action="wave.reopened")
    assert (reopened.from_state, reopened.to_state, reopened.actor_id) == (W.COMPLETED, W.RUNNING, officer.pk)


def test_a_retry_after_the_window_closed_carries_the_mailbox_over(db, org_a, admin_a, monkeypatch):
    pumped = []
    monkeypatch.setattr("migrations_app.services.execution.actions.wave_pump_later", pumped.append)
    wave, [done, failed] = running_wave(org_a, 2, starts_in=dt.timedelta(hours=-8))  # closed 2 hours ago
    Mailbox.objects.filter(pk=done.pk).update(state=M.MIGRATED)
    fail(failed)
    assert waves_complete_if_done() == [wave.pk]
    assert wave.ends_at < timezone.now()

    retried = mailbox_retry(mailbox=Mailbox.objects.get(pk=failed.pk), actor=admin_a)

    wave.refresh_from_db()
    assert wave.status == W.COMPLETED
    assert retried.state == M.SCHEDULED and retried.carried_over  # for the programme office to place
    assert Event.objects.filter(mailbox_id=failed.pk, action="mailbox.carried_over").exists()
    assert pumped == []


def test_retrying_in_a_running_wave_queues_it_at_once(
    db, org_a, admin_a, django_capture_on_commit_callbacks, monkeypatch
):
    pumped = []
    monkeypatch.setattr("migrations_app.services.execution.actions.wave_pump_later", pumped.append)
    wave, [waiting, failed] = running_wave(org_a, 2)
    fail(failed)
    with django_capture_on_commit_callbacks(execute=True):
        mailbox_retry(mailbox=Mailbox.objects.get(pk=failed.pk), actor=admin_a)
    assert pumped == [wave.pk]
