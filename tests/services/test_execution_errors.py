"""Typed engine errors: retryable ones come back after a back-off, permanent ones fail with their code."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.engines import NETWORK, THROTTLED, RetryableError
from migrations_app.engines.simulated import SimulatedEngine
from migrations_app.models import Event, Mailbox
from migrations_app.services.execution import SYNC, mailbox_claim, mailbox_run_sync, retry_delay, wave_tick
from tests.execution_fixtures import approved_wave

M = Mailbox.State


class FlakyOnce(SimulatedEngine):
    """The connection drops on the first call, half way through; fine afterwards."""

    calls = 0
    code = NETWORK

    def sync(self, spec, checkpoint=None, progress=None):
        type(self).calls += 1
        if type(self).calls == 1:
            half = {"engine": "simulated", "items": 50, "bytes": spec.size_bytes // 2, "attempt": 1}
            progress(50, spec.size_bytes // 2, half)
            raise RetryableError(self.code, "connection reset", checkpoint=half, retry_after=None)
        return super().sync(spec, checkpoint, progress)


@pytest.fixture
def claimed(db, org_a, settings):
    settings.MIGRATION_RETRY_BASE_SECONDS = 30
    settings.MIGRATION_RETRY_MAX_SECONDS = 3600
    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, now=now, starts_in=dt.timedelta(hours=2))  # pre-stage
    wave_tick(now=now)
    return wave, mailbox, now


def test_a_retryable_error_goes_back_with_a_back_off_then_succeeds(claimed):
    wave, mailbox, now = claimed
    FlakyOnce.calls = 0
    mailbox_run_sync(mailbox_id=mailbox.pk, engine=FlakyOnce(instant=True))
    mailbox.refresh_from_db()
    assert mailbox.state == M.SCHEDULED and mailbox.attempts == 1
    assert mailbox.last_error_code == NETWORK
    assert mailbox.checkpoint["bytes"] == mailbox.size_bytes // 2  # resumes, not restarts
    wait = (mailbox.retry_at - timezone.now()).total_seconds()
    assert 14 <= wait <= 30

    assert mailbox_claim(wave=wave, phase=SYNC, now=now) == []  # not before its retry time
    assert mailbox_claim(wave=wave, phase=SYNC, now=mailbox.retry_at) == [mailbox.pk]
    mailbox_run_sync(mailbox_id=mailbox.pk, engine=FlakyOnce(instant=True))
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCED and mailbox.attempts == 0 and mailbox.last_error_code == ""
    assert mailbox.bytes_copied == mailbox.size_bytes
    assert Event.objects.filter(mailbox_id=mailbox.pk, action="mailbox.retry_scheduled").count() == 1


def test_a_permanent_error_fails_the_mailbox_with_its_code(claimed):
    wave, mailbox, now = claimed
    mailbox_run_sync(
        mailbox_id=mailbox.pk, engine=SimulatedEngine(instant=True, failure_rates={"AUTH_FAILED": 1})
    )
    mailbox.refresh_from_db()
    assert mailbox.state == M.FAILED
    assert mailbox.last_error_code == "AUTH_FAILED"
    assert "credentials" in mailbox.last_error_message
    event = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.failed")
    assert (event.from_state, event.to_state, event.data["code"]) == (M.SYNCING, M.FAILED, "AUTH_FAILED")


def test_retries_stop_at_the_limit(claimed, settings):
    settings.MIGRATION_RETRY_LIMIT = 2
    wave, mailbox, now = claimed
    always = SimulatedEngine(instant=True, failure_rates={NETWORK: 1})
    later = now
    for attempt in (1, 2):
        mailbox_run_sync(mailbox_id=mailbox.pk, engine=always)
        mailbox.refresh_from_db()
        assert mailbox.state == M.SCHEDULED and mailbox.attempts == attempt
        later = mailbox.retry_at
        assert mailbox_claim(wave=wave, phase=SYNC, now=later) == [mailbox.pk]
    mailbox_run_sync(mailbox_id=mailbox.pk, engine=always)
    mailbox.refresh_from_db()
    assert mailbox.state == M.FAILED and mailbox.last_error_code == NETWORK
    assert "gave up after 2 retries" in mailbox.last_error_message


def test_the_back_off_grows_and_is_capped(settings):
    settings.MIGRATION_RETRY_BASE_SECONDS = 10
    settings.MIGRATION_RETRY_MAX_SECONDS = 100
    assert 5 <= retry_delay(1) <= 10
    assert 20 <= retry_delay(3) <= 40
    assert 50 <= retry_delay(10) <= 100
    assert retry_delay(1, hint=300) == 300
    assert dt.timedelta(seconds=retry_delay(2)) <= dt.timedelta(seconds=20)


class ThrottledHalfWay(FlakyOnce):
    code = THROTTLED


def test_throttled_after_progress_is_pacing_and_spends_no_attempt(claimed):
    wave, mailbox, now = claimed
    ThrottledHalfWay.calls = 0
    mailbox_run_sync(mailbox_id=mailbox.pk, engine=ThrottledHalfWay(instant=True))
    mailbox.refresh_from_db()

    assert mailbox.state == M.SCHEDULED and mailbox.attempts == 0  # it kept progressing: not a failure
    assert mailbox.last_error_code == "" and mailbox.retry_at is not None
    assert mailbox.checkpoint["bytes"] == mailbox.size_bytes // 2
    assert Event.objects.filter(mailbox_id=mailbox.pk, action="mailbox.paced").count() == 1
    assert mailbox_claim(wave=wave, phase=SYNC, now=mailbox.retry_at) == [mailbox.pk]
    mailbox_run_sync(mailbox_id=mailbox.pk, engine=ThrottledHalfWay(instant=True))
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCED and mailbox.attempts == 0
