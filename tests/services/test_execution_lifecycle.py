"""A wave's mailboxes from scheduled to migrated, driven by the tick with explicit times."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.models import Event, Mailbox, Wave
from migrations_app.services.execution import (
    CUTOVER,
    SYNC,
    mailbox_claim,
    mailbox_run_cutover,
    mailbox_run_sync,
    reconcile_stale,
    wave_tick,
)
from migrations_app.services.waves import wave_cancel, wave_pause, wave_resume
from tests.execution_fixtures import CUTOVER_STEPS, approved_wave, transitions

M = Mailbox.State


@pytest.fixture(autouse=True)
def instant_engine(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True, "chunk_bytes": 100_000}}


def test_a_mailbox_runs_to_migrated_with_every_transition_in_the_event_table(db, org_a):
    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, now=now, starts_in=dt.timedelta(hours=2))

    stats = wave_tick(now=now)
    assert stats["started"] == 1 and stats["claimed"] == 1
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCING

    mailbox_run_sync(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCED
    assert mailbox.bytes_copied == mailbox.size_bytes and mailbox.items_copied == 100
    assert mailbox.checkpoint["bytes"] == mailbox.size_bytes
    assert mailbox.heartbeat_at is not None and mailbox.lease == ""

    wave_tick(now=now)
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCED  # pre-staged: waits for its window
    now = wave.starts_at
    wave_tick(now=now)
    mailbox.refresh_from_db()
    assert mailbox.state == M.CUTOVER
    mailbox_run_cutover(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED

    wave_tick(now=now)
    wave.refresh_from_db()
    assert wave.status == Wave.Status.COMPLETED
    assert transitions(mailbox) == [
        (M.SCHEDULED, M.SYNCING),
        (M.SYNCING, M.SYNCED),
        (M.SYNCED, M.CUTOVER),
        *CUTOVER_STEPS,  # final delta, switch requested, switched
        (M.CUTOVER, M.VERIFYING),
        (M.VERIFYING, M.MIGRATED),
    ]
    wave_events = Event.objects.filter(wave_id=wave.pk, mailbox__isnull=True).order_by("id")
    assert list(wave_events.values_list("action", flat=True)) == ["wave.started", "wave.completed"]


def test_a_mailbox_synced_inside_its_open_window_goes_straight_on_to_its_cutover(db, org_a):
    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, now=now)  # the window opened an hour ago
    assert wave_tick(now=now)["claimed"] == 1

    mailbox_run_sync(mailbox_id=mailbox.pk)  # one run, no second claim or task
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED and mailbox.lease == ""
    assert mailbox.bytes_copied == mailbox.size_bytes
    assert transitions(mailbox) == [
        (M.SCHEDULED, M.SYNCING),
        (M.SYNCING, M.SYNCED),
        (M.SYNCED, M.CUTOVER),
        *CUTOVER_STEPS,  # final delta, switch requested, switched
        (M.CUTOVER, M.VERIFYING),
        (M.VERIFYING, M.MIGRATED),
    ]


def test_a_mailbox_synced_while_its_wave_is_paused_waits(db, org_a, officer):
    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, now=now)
    wave_tick(now=now)
    wave.refresh_from_db()
    wave_pause(wave=wave, actor=officer, reason="incident on the target")

    mailbox_run_sync(mailbox_id=mailbox.pk)  # the copy that was running finishes its pre-stage only
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCED and mailbox.lease == ""


def _sync_watching_saved_bytes(org_a) -> tuple[Mailbox, list[int]]:
    """Sync one pre-staging mailbox in ten chunks; after each chunk, the bytes_copied saved in the database."""
    from migrations_app.engines.simulated import SimulatedEngine

    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, now=now, starts_in=dt.timedelta(hours=2))
    wave_tick(now=now)
    seen = []

    class Watching(SimulatedEngine):
        def sync(self, spec, checkpoint=None, progress=None):
            def watch(items, size, cp):
                progress(items, size, cp)
                seen.append(Mailbox.objects.values_list("bytes_copied", flat=True).get(pk=mailbox.pk))

            return super().sync(spec, checkpoint, watch)

    mailbox_run_sync(mailbox_id=mailbox.pk, engine=Watching(instant=True, chunk_bytes=100_000))
    return mailbox, seen


def test_progress_is_saved_after_every_chunk(db, org_a, settings):
    settings.MIGRATION_PROGRESS_SECONDS = 0  # chunks a second or more apart, as real copies are
    mailbox, seen = _sync_watching_saved_bytes(org_a)
    assert len(seen) == 10
    assert seen == sorted(seen) and seen[-1] == mailbox.size_bytes


def test_progress_of_quick_chunks_is_saved_at_most_once_per_interval_and_at_the_end(db, org_a, settings):
    settings.MIGRATION_PROGRESS_SECONDS = 3600
    mailbox, seen = _sync_watching_saved_bytes(org_a)
    assert seen == [0] * 10  # ten chunks inside one interval: no write between them
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.bytes_copied, mailbox.items_copied) == (
        M.SYNCED,
        mailbox.size_bytes,
        mailbox.item_count,
    )
    assert mailbox.checkpoint["bytes"] == mailbox.size_bytes


def test_an_approved_wave_waits_for_its_pre_stage_time(db, org_a, settings):
    settings.MIGRATION_PRESTAGE_HOURS = 24
    now = timezone.now()
    wave, mailboxes = approved_wave(org_a, 2, starts_in=dt.timedelta(hours=30), now=now)
    assert wave_tick(now=now)["started"] == 0
    assert wave_tick(now=now + dt.timedelta(hours=7))["started"] == 1
    assert Mailbox.objects.filter(wave=wave, state=M.SYNCING).count() == 2


def test_cutover_is_refused_outside_the_window(db, org_a):
    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, starts_in=dt.timedelta(hours=2), now=now)
    wave_tick(now=now)
    mailbox_run_sync(mailbox_id=mailbox.pk)

    wave_tick(now=now)  # pre-stage done, window not open yet
    assert mailbox_claim(wave=wave, phase=CUTOVER, now=now) == []
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCED

    assert mailbox_claim(wave=wave, phase=CUTOVER, now=now + dt.timedelta(hours=2)) == [mailbox.pk]


def test_at_window_close_unfinished_mailboxes_are_carried_over_not_cut_over(db, org_a):
    now = timezone.now()
    wave, [done, synced, waiting] = approved_wave(org_a, 3, now=now, starts_in=dt.timedelta(hours=2))
    wave_tick(now=now)
    for mailbox in (done, synced, waiting):
        mailbox_run_sync(mailbox_id=mailbox.pk)
    now = wave.starts_at
    assert mailbox_claim(wave=wave, phase=CUTOVER, now=now, limit=1) == [done.pk]
    mailbox_run_cutover(mailbox_id=done.pk)

    closed = wave.ends_at + dt.timedelta(minutes=1)
    stats = wave_tick(now=closed)
    assert stats["carried_over"] == 2 and stats["completed"] == 1
    assert mailbox_claim(wave=wave, phase=CUTOVER, now=closed) == []
    states = dict(Mailbox.objects.filter(wave=wave).values_list("pk", "state"))
    assert states == {done.pk: M.MIGRATED, synced.pk: M.SYNCED, waiting.pk: M.SYNCED}
    assert set(Mailbox.objects.filter(wave=wave, carried_over=True).values_list("pk", flat=True)) == {
        synced.pk,
        waiting.pk,
    }
    wave.refresh_from_db()
    assert wave.status == Wave.Status.COMPLETED
    assert Event.objects.filter(wave_id=wave.pk, action="wave.carried_over").get().data["mailboxes"] == 2
    carried = Event.objects.filter(action="mailbox.carried_over").values_list("mailbox_id", flat=True)
    assert sorted(carried) == sorted([synced.pk, waiting.pk])  # on each mailbox's timeline


def test_cancelling_a_paused_running_wave_carries_its_started_mailboxes_over(db, org_a, officer):
    """They were left attached to a cancelled wave, never placed again; now they wait, carried over, for the
    programme office to place them (their copies kept), and the untouched ones are ready for another wave."""
    now = timezone.now()
    wave, [synced, failed, untouched] = approved_wave(org_a, 3, now=now, starts_in=dt.timedelta(hours=2))
    wave_tick(now=now)  # running: the pre-stage copies start
    mailbox_run_sync(mailbox_id=synced.pk)
    Mailbox.objects.filter(pk=failed.pk).update(state=M.FAILED, lease="", last_error_code="AUTH_FAILED")
    Mailbox.objects.filter(pk=untouched.pk).update(state=M.SCHEDULED, lease="")
    wave.refresh_from_db()
    wave_pause(wave=wave, actor=officer, reason="incident on the target")
    wave_cancel(wave=wave, actor=officer, reason="window given to another trust")

    rows = {
        pk: (w, state, carried)
        for pk, w, state, carried in Mailbox.objects.values_list("pk", "wave", "state", "carried_over")
    }
    assert rows[synced.pk] == (wave.pk, M.SYNCED, True)
    assert rows[failed.pk] == (wave.pk, M.FAILED, True)
    assert rows[untouched.pk] == (None, M.READY, False)
    carried = Event.objects.filter(action="mailbox.carried_over").values_list("mailbox_id", "message")
    assert sorted(pk for pk, _ in carried) == sorted([synced.pk, failed.pk])
    assert all("was cancelled" in message for _, message in carried)


def test_pause_stops_claiming_and_resume_starts_it_again(db, org_a, officer):
    now = timezone.now()
    wave, mailboxes = approved_wave(org_a, 3, now=now)
    wave_tick(
        now=now,
    )
    Mailbox.objects.filter(wave=wave).update(state=M.SCHEDULED)  # as if none had been claimed yet
    wave.refresh_from_db()

    wave_pause(wave=wave, actor=officer, reason="incident on the target")
    assert wave_tick(now=now)["claimed"] == 0
    assert mailbox_claim(wave=wave, phase=SYNC, now=now) == []

    wave_resume(wave=wave, actor=officer)
    assert len(mailbox_claim(wave=wave, phase=SYNC, now=now)) == 3


def test_a_redelivered_task_does_nothing_while_another_run_holds_the_lease(db, org_a):
    now = timezone.now()
    wave, [mailbox] = approved_wave(org_a, 1, now=now)
    wave_tick(now=now)
    Mailbox.objects.filter(pk=mailbox.pk).update(lease="another-run", heartbeat_at=timezone.now())

    assert mailbox_run_sync(mailbox_id=mailbox.pk) is None
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCING and mailbox.lease == "another-run" and mailbox.bytes_copied == 0


def test_the_reconciler_requeues_a_mailbox_whose_heartbeat_went_stale(db, org_a, settings):
    settings.MIGRATION_HEARTBEAT_STALE_SECONDS = 600
    now = timezone.now()
    wave, [alive, dead] = approved_wave(org_a, 2, now=now, starts_in=dt.timedelta(hours=2))
    wave_tick(now=now)
    Mailbox.objects.filter(pk=alive.pk).update(lease="alive", heartbeat_at=now)
    Mailbox.objects.filter(pk=dead.pk).update(lease="dead", heartbeat_at=now - dt.timedelta(minutes=11))

    assert reconcile_stale(now=now) == [dead.pk]
    dead.refresh_from_db()
    assert dead.lease == "" and dead.state == M.SYNCING
    assert Event.objects.filter(mailbox_id=dead.pk, action="mailbox.requeued").exists()
    mailbox_run_sync(mailbox_id=dead.pk)  # the requeued task takes it and finishes it
    dead.refresh_from_db()
    assert dead.state == M.SYNCED
