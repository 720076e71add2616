"""Pause, resume and cancel one mailbox; roll back a migrated one; place a wave's carried-over mailboxes in
another wave. Who may, and what each does to a copy in progress."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from migrations_app.engines.simulated import SimulatedEngine
from migrations_app.models import Event, Mailbox, Wave
from migrations_app.services.execution import (
    SYNC,
    MailboxConflict,
    mailbox_cancel,
    mailbox_claim,
    mailbox_pause,
    mailbox_resume,
    mailbox_rollback,
    mailbox_run_sync,
    wave_tick,
)
from migrations_app.services.wave_moves import wave_place_carried_over
from tests.execution_fixtures import approved_wave, transitions
from tests.wave_fixtures import wave_with

M = Mailbox.State


@pytest.fixture(autouse=True)
def instant_engine(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True, "chunk_bytes": 100_000}}
    settings.MIGRATION_PROGRESS_SECONDS = 0


@pytest.fixture
def prestaging(db, org_a):
    """A wave in its pre-stage (window in two hours), its mailboxes claimed for their sync."""
    now = timezone.now()
    wave, mailboxes = approved_wave(org_a, 3, now=now, starts_in=dt.timedelta(hours=2))
    wave_tick(now=now)
    return wave, mailboxes, now


def test_a_paused_mailbox_is_not_claimed_until_resumed(prestaging, admin_a):
    wave, [mailbox, *_], now = prestaging
    Mailbox.objects.filter(wave=wave).update(state=M.SCHEDULED)
    mailbox_pause(mailbox=mailbox, actor=admin_a, reason="user on leave")
    claimed = mailbox_claim(wave=wave, phase=SYNC, now=now)
    assert mailbox.pk not in claimed and len(claimed) == 2

    mailbox_resume(mailbox=mailbox, actor=admin_a)
    assert mailbox_claim(wave=wave, phase=SYNC, now=now) == [mailbox.pk]
    actions = list(
        Event.objects.filter(mailbox_id=mailbox.pk).values_list("action", flat=True).order_by("id")
    )
    assert actions[-3:] == ["mailbox.paused", "mailbox.resumed", "mailbox.claimed"]


def test_pausing_a_mailbox_being_copied_stops_the_copy_at_a_checkpoint_and_resume_continues_it(
    prestaging, officer
):
    wave, [mailbox, *_], now = prestaging

    class PausedHalfWay(SimulatedEngine):
        def sync(self, spec, checkpoint=None, progress=None):
            def report(items, size, cp):
                if size >= spec.size_bytes // 2 and not Mailbox.objects.get(pk=mailbox.pk).paused:
                    mailbox_pause(mailbox=Mailbox.objects.get(pk=mailbox.pk), actor=officer)  # from the page
                progress(items, size, cp)

            return super().sync(spec, checkpoint, report)

    mailbox_run_sync(mailbox_id=mailbox.pk, engine=PausedHalfWay(instant=True, chunk_bytes=100_000))
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.paused, mailbox.lease) == (M.SCHEDULED, True, "")
    assert 0 < mailbox.bytes_copied < mailbox.size_bytes
    assert mailbox.checkpoint["bytes"] == mailbox.bytes_copied  # resumes from here, not from zero
    assert transitions(mailbox)[-1] == (M.SYNCING, M.SCHEDULED)

    mailbox_resume(mailbox=mailbox, actor=officer)
    assert mailbox_claim(wave=wave, phase=SYNC, now=now) == [mailbox.pk]
    copied_before = mailbox.bytes_copied
    seen = []

    class Watching(SimulatedEngine):
        def sync(self, spec, checkpoint=None, progress=None):
            seen.append((checkpoint or {}).get("bytes"))
            return super().sync(spec, checkpoint, progress)

    mailbox_run_sync(mailbox_id=mailbox.pk, engine=Watching(instant=True, chunk_bytes=100_000))
    mailbox.refresh_from_db()
    assert seen == [copied_before]
    assert (mailbox.state, mailbox.bytes_copied) == (M.SYNCED, mailbox.size_bytes)


def test_pause_and_resume_refuse_what_makes_no_sense(prestaging, officer):
    wave, [mailbox, *_], now = prestaging
    with pytest.raises(MailboxConflict, match="not paused"):
        mailbox_resume(mailbox=mailbox, actor=officer)
    mailbox_pause(mailbox=mailbox, actor=officer)
    with pytest.raises(MailboxConflict, match="already paused"):
        mailbox_pause(mailbox=mailbox, actor=officer)
    Mailbox.objects.filter(pk=mailbox.pk).update(state=M.MIGRATED, paused=False)
    with pytest.raises(MailboxConflict, match="migrated"):
        mailbox_pause(mailbox=Mailbox.objects.get(pk=mailbox.pk), actor=officer)


def test_cancel_takes_a_waiting_mailbox_out_of_its_wave_and_refuses_one_being_copied(prestaging, admin_a):
    wave, [running, waiting, _], now = prestaging
    Mailbox.objects.filter(pk=waiting.pk).update(state=M.SYNCED)
    waiting.refresh_from_db()
    mailbox_cancel(mailbox=waiting, actor=admin_a, reason="leaver")
    waiting.refresh_from_db()
    assert (waiting.state, waiting.wave_id) == (M.READY, None)
    assert Event.objects.get(mailbox_id=waiting.pk, action="mailbox.cancelled").message == "leaver"

    running.refresh_from_db()
    assert running.state == M.SYNCING
    with pytest.raises(MailboxConflict, match="pause it first"):
        mailbox_cancel(mailbox=running, actor=admin_a)


def test_rolling_back_a_migrated_mailbox_needs_a_reason_and_keeps_its_checkpoint(prestaging, admin_a):
    wave, [mailbox, *_], now = prestaging
    Mailbox.objects.filter(pk=mailbox.pk).update(state=M.MIGRATED, checkpoint={"bytes": 5})
    mailbox.refresh_from_db()
    with pytest.raises(ValidationError, match="reason"):
        mailbox_rollback(mailbox=mailbox, actor=admin_a)
    mailbox_rollback(mailbox=mailbox, actor=admin_a, reason="user cannot open shared calendars")
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.wave_id, mailbox.checkpoint) == (M.READY, None, {"bytes": 5})


@pytest.mark.parametrize("who", ["admin_b", "viewer"])
def test_only_their_administrators_pause_resume_or_cancel(prestaging, who, request):
    wave, [mailbox, *_], now = prestaging
    actor = request.getfixturevalue(who)
    for action in (mailbox_pause, mailbox_resume, mailbox_cancel):
        with pytest.raises(PermissionDenied):
            action(mailbox=mailbox, actor=actor)
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.paused) == (M.SYNCING, False)


@pytest.fixture
def carried(db, org_a, officer):
    """A wave whose window closed with one mailbox migrated, one synced and one failed carried over."""
    now = timezone.now()
    wave, [done, synced, failed] = approved_wave(org_a, 3, now=now)
    Mailbox.objects.filter(pk=done.pk).update(state=M.MIGRATED)
    Mailbox.objects.filter(pk=synced.pk).update(state=M.SYNCED, checkpoint={"bytes": 7})
    Mailbox.objects.filter(pk=failed.pk).update(state=M.FAILED, last_error_code="OVER_QUOTA", attempts=2)
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    wave_tick(now=wave.ends_at + dt.timedelta(minutes=1))
    wave.refresh_from_db()
    target = wave_with(org_a, name="Next evening", status=Wave.Status.DRAFT)
    return wave, target, done, synced, failed


def test_carried_over_mailboxes_are_placed_in_another_wave(carried, officer):
    wave, target, done, synced, failed = carried
    assert wave.status == Wave.Status.COMPLETED
    result = wave_place_carried_over(actor=officer, source=wave, target=target, confirm=True)
    assert result.moved
    rows = dict(Mailbox.objects.filter(wave=target).values_list("pk", "state"))
    assert rows == {synced.pk: M.READY, failed.pk: M.READY}
    synced.refresh_from_db()
    failed.refresh_from_db()
    assert synced.checkpoint == {"bytes": 7} and not synced.carried_over  # its next copy is incremental
    assert (failed.last_error_code, failed.attempts) == ("", 0)
    assert Mailbox.objects.get(pk=done.pk).wave_id == wave.pk
    assert Event.objects.filter(action="mailbox.placed", wave_id=target.pk).count() == 2
    with pytest.raises(ValidationError, match="no carried-over"):
        wave_place_carried_over(actor=officer, source=wave, target=target)


def test_placing_carried_over_mailboxes_is_for_the_programme_office(carried, admin_a):
    wave, target, *_ = carried
    with pytest.raises(PermissionDenied):
        wave_place_carried_over(actor=admin_a, source=wave, target=target)
    assert not Mailbox.objects.filter(wave=target).exists()


def test_placing_into_a_running_wave_is_refused(carried, officer):
    wave, target, *_ = carried
    Wave.objects.filter(pk=target.pk).update(status=Wave.Status.RUNNING)
    target.refresh_from_db()
    with pytest.raises(ValidationError, match="running"):
        wave_place_carried_over(actor=officer, source=wave, target=target)
