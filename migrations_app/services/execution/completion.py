"""When a running wave is done, and what a retry does to a wave that was.

A wave is done when none of its mailboxes has anything left to do: every one migrated, failed (waiting for a
person: the failures page and "Retry these"), retired or carried over. It is completed at once by the run
that recorded the last mailbox's end (runner.mailboxes_run), with the beat's tick as the backstop
(clock.wave_tick), so a finished wave never sits at "Running, moving now 0".

A retry puts failed mailboxes back to scheduled: a wave completed while its window is still open runs again
(and is pumped at once); one whose window has closed carries the retried mailboxes over for the programme
office to place in another wave, as a window's close does.

Both take the waves' row locks first, so a retry and a completion never cross: the completion decides in a
statement that starts after it holds the lock (a new snapshot under READ COMMITTED), so it sees a retry that
committed while it waited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Sum
from django.utils import timezone

from migrations_app.models import Mailbox, MailboxCounter, User, Wave
from migrations_app.services.events import event_record_many
from migrations_app.services.execution.states import M, W

# What a mailbox in a running wave may still do by itself (a paused one is held by a person: not done).
WAITING = (M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.SWITCHING, M.VERIFYING)


def _waiting():
    return Mailbox.objects.filter(wave=OuterRef("pk"), carried_over=False, state__in=WAITING)


def waves_complete_if_done(
    *, wave_ids: Iterable[int] | None = None, now: dt.datetime | None = None
) -> list[int]:
    """running -> completed for every running wave (or those given) with nothing left to do, set-based: one
    locking SELECT, one check, one UPDATE, one GROUP BY over the status counters and one INSERT of the events,
    whatever the number of waves. Returns the ids completed."""
    now = now or timezone.now()
    with transaction.atomic():
        candidates = Wave.objects.filter(status=W.RUNNING).exclude(Exists(_waiting()))
        if wave_ids is not None:
            candidates = candidates.filter(pk__in=list(wave_ids))
        locked = list(candidates.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if not locked:
            return []
        # decided again now that the rows are ours: a retry that committed while we waited is seen
        done = dict(
            Wave.objects.filter(pk__in=locked, status=W.RUNNING)
            .exclude(Exists(_waiting()))
            .values_list("pk", "name")
        )
        if not done:
            return []
        Wave.objects.filter(pk__in=list(done)).update(status=W.COMPLETED, updated_at=now)
        outcome: dict[int, dict[str, int]] = {pk: {} for pk in done}
        rows = (
            MailboxCounter.objects.filter(wave_id__in=list(done))
            .order_by()
            .values_list("wave_id", "state")
            .annotate(n=Sum("mailboxes"))
        )
        for wave_id, state, n in rows:
            if n:
                outcome[wave_id][state] = outcome[wave_id].get(state, 0) + n
        carried = dict(
            Mailbox.objects.filter(wave_id__in=list(done), carried_over=True)
            .order_by()
            .values_list("wave_id")
            .annotate(n=Count("id"))
        )
        event_record_many(
            dict(
                action="wave.completed",
                wave_id=pk,
                subject=name,
                from_state=W.RUNNING,
                to_state=W.COMPLETED,
                message=_summary(outcome[pk], carried.get(pk, 0)),
                data={
                    "migrated": outcome[pk].get(M.MIGRATED, 0),
                    "failed": outcome[pk].get(M.FAILED, 0),
                    "carried_over": carried.get(pk, 0),
                },
            )
            for pk, name in done.items()
        )
    return sorted(done)


def _summary(states: dict[str, int], carried_over: int) -> str:
    parts = [f"{states.get(M.MIGRATED, 0):,} migrated"]
    if states.get(M.FAILED):
        parts.append(f"{states[M.FAILED]:,} failed (see failures)")
    if carried_over:
        parts.append(f"{carried_over:,} carried over")
    return "nothing left to do: " + ", ".join(parts)


def waves_lock_for_retry(wave_ids: Iterable[int]) -> dict[int, Wave]:
    """Lock the waves a retry touches before it changes their mailboxes (see the module's note)."""
    ids = sorted({pk for pk in wave_ids if pk})
    if not ids:
        return {}
    return {w.pk: w for w in Wave.objects.select_for_update().filter(pk__in=ids).order_by("pk")}


def waves_after_retry(
    *, waves: dict[int, Wave], retried: list[tuple[int, int, int, str]], actor: User, now: dt.datetime
) -> list[int]:
    """After failed mailboxes (id, organisation id, wave id, email) went back to scheduled: a completed wave
    whose window is open runs again; one whose window has closed carries them over. Returns the ids of the
    running waves to pump at once (the caller queues them on commit)."""
    from migrations_app.services.events import event_record

    reopen = [w for w in waves.values() if w.status == W.COMPLETED and w.ends_at > now]
    closed = {w.pk for w in waves.values() if w.status == W.COMPLETED and w.ends_at <= now}
    if reopen:
        Wave.objects.filter(pk__in=[w.pk for w in reopen], status=W.COMPLETED).update(
            status=W.RUNNING, updated_at=now
        )
        for wave in reopen:
            wave.status = W.RUNNING
            event_record(
                action="wave.reopened",
                actor=actor,
                wave=wave,
                subject=wave.name,
                from_state=W.COMPLETED,
                to_state=W.RUNNING,
                message="failed mailboxes retried while its window is open",
            )
    late = [row for row in retried if row[2] in closed]
    if late:
        Mailbox.objects.filter(pk__in=[row[0] for row in late]).update(carried_over=True, updated_at=now)
        event_record_many(
            dict(
                action="mailbox.carried_over",
                organisation_id=organisation_id,
                mailbox_id=pk,
                wave_id=wave_id,
                subject=email,
                message=f"retried after {waves[wave_id].name}'s window closed: carried over, to be placed in "
                "another wave",
                data={"state": M.SCHEDULED},
            )
            for pk, organisation_id, wave_id, email in late
        )
    return sorted(pk for pk, w in waves.items() if w.status == W.RUNNING)
