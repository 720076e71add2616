"""The wave clock: the beat's tick (start pre-stage, fill running waves, carry over at window close,
complete), the pump that fills a wave's free slots, and the reconciler that requeues mailboxes whose
heartbeat went stale."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from migrations_app.models import Mailbox, Wave
from migrations_app.services.events import event_record, event_record_many
from migrations_app.services.execution.claims import _queue, mailbox_claim
from migrations_app.services.execution.completion import waves_complete_if_done
from migrations_app.services.execution.states import ACTIVE_STATES, CUTOVER, PHASES, SYNC, M, W
from migrations_app.services.execution.switch import switch_timeouts


def wave_pump_later(wave_id: int) -> None:
    from migrations_app.tasks import wave_pump

    wave_pump.delay(wave_id)


def wave_pump(*, wave: Wave, now: dt.datetime | None = None) -> dict[str, int]:
    """Fill the wave's free slots: cutover first inside the window (the window is the scarce part), then
    pre-stage syncs; complete the wave when nothing is left. Called by the tick and after every finished
    mailbox, so a wave keeps moving without waiting for the next tick."""
    now = now or timezone.now()
    cutover = mailbox_claim(wave=wave, phase=CUTOVER, now=now) if wave.starts_at <= now < wave.ends_at else []
    synced = mailbox_claim(wave=wave, phase=SYNC, now=now)
    completed = wave_complete_if_done(wave=wave)
    return {"cutover": len(cutover), "sync": len(synced), "completed": int(completed)}


def wave_complete_if_done(*, wave: Wave) -> bool:
    """running -> completed when none of its mailboxes has anything left to do (execution/completion.py)."""
    done = bool(waves_complete_if_done(wave_ids=[wave.pk]))
    if done:
        wave.status = W.COMPLETED
    return done


def wave_carry_over(*, wave: Wave, now: dt.datetime | None = None, why: str = "") -> int:
    """The window has closed (or the wave was cancelled while running, `why` says so): what has not started
    its cutover is not cut over late but carried over for the programme office to place in another wave.
    Mailboxes already cutting over finish."""
    now = now or timezone.now()
    why = why or f"{wave.name}'s window closed"
    with transaction.atomic():
        rows = list(
            Mailbox.objects.filter(
                wave=wave, carried_over=False, state__in=(M.SCHEDULED, M.SYNCING, M.SYNCED, M.FAILED)
            ).values_list("id", "organisation_id", "email", "state")
        )
        if not rows:
            return 0
        Mailbox.objects.filter(pk__in=[r[0] for r in rows]).update(carried_over=True, updated_at=now)
        message = f"not finished when {why}: carried over, to be placed in another wave"
        event_record_many(  # one INSERT: each mailbox's timeline shows it
            dict(
                action="mailbox.carried_over",
                organisation_id=org_id,
                mailbox_id=pk,
                wave_id=wave.pk,
                subject=email,
                message=message,
                data={"state": state},
            )
            for pk, org_id, email, state in rows
        )
        event_record(
            action="wave.carried_over",
            wave=wave,
            subject=wave.name,
            message=f"{len(rows)} mailbox(es) not finished when {why}",
            data={"mailboxes": len(rows)},
        )
    return len(rows)


def wave_tick(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The beat's every-minute pass over the waves that can move: start the pre-stage of approved waves whose
    time has come, fill the running ones, carry over at window close, complete what is done; fail the switches
    not confirmed in time."""
    now = now or timezone.now()
    prestage = dt.timedelta(hours=settings.MIGRATION_PRESTAGE_HOURS)
    stats = {"started": 0, "claimed": 0, "carried_over": 0, "completed": 0}
    for wave in Wave.objects.filter(status=W.APPROVED, starts_at__lte=now + prestage, ends_at__gt=now):
        with transaction.atomic():
            if Wave.objects.filter(pk=wave.pk, status=W.APPROVED).update(status=W.RUNNING, updated_at=now):
                wave.status = W.RUNNING
                stats["started"] += 1
                event_record(
                    action="wave.started",
                    wave=wave,
                    subject=wave.name,
                    from_state=W.APPROVED,
                    to_state=W.RUNNING,
                )
    # the backstop: every running wave with nothing left to do, in one pass (the run that records a wave's last
    # mailbox completes it at once; this catches one whose last mailbox ended another way)
    stats["completed"] += len(waves_complete_if_done(now=now))
    for wave in Wave.objects.filter(status=W.RUNNING).select_related("source_endpoint", "target_endpoint"):
        if now >= wave.ends_at:
            stats["carried_over"] += wave_carry_over(wave=wave, now=now)
            stats["completed"] += int(wave_complete_if_done(wave=wave))
            continue
        pumped = wave_pump(wave=wave, now=now)
        stats["claimed"] += pumped["cutover"] + pumped["sync"]
        stats["completed"] += pumped["completed"]
    late = switch_timeouts(now=now)
    if late:
        stats["switch_timeouts"] = late
    return stats


def reconcile_stale(*, now: dt.datetime | None = None, limit: int = 1000) -> list[int]:
    """Requeue mailboxes whose heartbeat went stale (their worker died, or the task was lost): clear the lease
    under the same staleness condition, so a run that is alive and reporting keeps its mailbox."""
    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=settings.MIGRATION_HEARTBEAT_STALE_SECONDS)
    requeued: list[tuple[int, str]] = []
    rows = Mailbox.objects.filter(state__in=ACTIVE_STATES, heartbeat_at__lt=stale).select_related(
        "organisation", "wave"
    )
    for mailbox in rows.order_by("id")[:limit]:
        with transaction.atomic():
            if not Mailbox.objects.filter(pk=mailbox.pk, state=mailbox.state, heartbeat_at__lt=stale).update(
                lease="", heartbeat_at=now, updated_at=now
            ):
                continue
            state = mailbox.state
            if state == M.VERIFYING:  # verification is repeated from the cutover delta, which is safe
                Mailbox.objects.filter(pk=mailbox.pk).update(state=M.CUTOVER)
            event_record(
                action="mailbox.requeued",
                organisation=mailbox.organisation,
                mailbox=mailbox,
                wave=mailbox.wave,
                subject=mailbox.email,
                from_state=state,
                to_state=M.CUTOVER if state == M.VERIFYING else state,
                message="heartbeat stale: the worker is taken to be gone",
            )
            phase = SYNC if state == M.SYNCING else CUTOVER
            requeued.append((mailbox.pk, phase))
    for phase in PHASES:
        ids = [pk for pk, p in requeued if p == phase]
        if ids:
            transaction.on_commit(lambda ids=ids, phase=phase: _queue([[pk] for pk in ids], phase))
    return [pk for pk, _ in requeued]
