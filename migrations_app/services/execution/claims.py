"""Claiming: a running wave's mailboxes move into syncing / cutover within the concurrency caps, counted in
the database under row locks on the programme settings and the endpoints, and are queued to the workers in
batches sized by the engine's expected time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from migrations_app.engines import Engine
from migrations_app.models import Endpoint, Mailbox, ProgrammeSettings, Wave
from migrations_app.services.events import event_record_many
from migrations_app.services.execution.specs import wave_engine
from migrations_app.services.execution.states import _CLAIM, ACTIVE_STATES, CUTOVER, W


def _active(qs) -> int:
    return qs.filter(state__in=ACTIVE_STATES).count()


def _room(wave: Wave, limit: int) -> int:
    """How many more mailboxes may start now: the overall cap and both endpoints' caps. Call inside the claim
    transaction, after the locks are taken. A few small counts over the active mailboxes (state index)."""
    room = min(limit, settings.MIGRATION_MAX_CONCURRENCY - _active(Mailbox.objects.all()))
    for endpoint in Endpoint.objects.filter(pk__in=_endpoint_ids(wave)):
        on_endpoint = Mailbox.objects.filter(
            Q(wave__source_endpoint=endpoint) | Q(wave__target_endpoint=endpoint)
        )
        room = min(room, endpoint.max_concurrency - _active(on_endpoint))
    return max(room, 0)


def _endpoint_ids(wave: Wave) -> list[int]:
    return sorted({pk for pk in (wave.source_endpoint_id, wave.target_endpoint_id) if pk})


def mailbox_claim(*, wave: Wave, phase: str, limit: int = 1000, now: dt.datetime | None = None) -> list[int]:
    """Move up to `limit` mailboxes of a running wave into the phase's running state, within the caps, and
    queue a task for each (on commit). Returns the ids claimed. Cutover is only claimed inside the window."""
    now = now or timezone.now()
    from_state, to_state = _CLAIM[phase]
    candidates = (
        Mailbox.objects.filter(wave=wave, state=from_state, carried_over=False, paused=False)
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
        .order_by("id")
    )
    if not candidates.exists():
        return []  # nothing waiting: no need to queue behind the other claimers for the locks
    with transaction.atomic():
        # Lock order: the settings row (overall cap), then the endpoints by id (their caps). Every claimer takes
        # them in this order, so claims serialise on what they share and never deadlock.
        ProgrammeSettings.load()
        list(ProgrammeSettings.objects.select_for_update().filter(pk=1))
        list(Endpoint.objects.select_for_update().filter(pk__in=_endpoint_ids(wave)).order_by("pk"))
        wave_now = Wave.objects.filter(pk=wave.pk).values_list("status", "starts_at", "ends_at").first()
        if wave_now is None or wave_now[0] != W.RUNNING:
            return []  # paused, cancelled, completed: claim nothing
        if phase == CUTOVER and not (wave_now[1] <= now < wave_now[2]):
            return []
        room = _room(wave, limit)
        if room <= 0:
            return []
        claimed: list[int] = []
        if connection.features.has_select_for_update_skip_locked:
            # Rows another transaction holds are skipped, not waited for; the rows we lock are re-checked
            # against the state condition when locked, so one UPDATE of them all is safe.
            ids = list(
                candidates.select_for_update(skip_locked=True, of=("self",)).values_list("id", flat=True)[
                    :room
                ]
            )
            if ids:
                Mailbox.objects.filter(pk__in=ids, state=from_state).update(
                    state=to_state, lease="", heartbeat_at=now, retry_at=None, updated_at=now
                )
                claimed = ids
        else:
            # SQLite: no row locks. Each row is claimed by its own conditional UPDATE, so of two claimers that
            # read the same candidates, each row goes to exactly one of them.
            for pk in candidates.values_list("id", flat=True)[:room]:
                if Mailbox.objects.filter(pk=pk, state=from_state).update(
                    state=to_state, lease="", heartbeat_at=now, retry_at=None, updated_at=now
                ):
                    claimed.append(pk)
        rows = list(
            Mailbox.objects.filter(pk__in=claimed)
            .order_by("id")
            .values_list("id", "organisation_id", "email", "size_bytes")
        )
        event_record_many(
            dict(
                action="mailbox.claimed",
                organisation_id=org_id,
                mailbox_id=pk,
                wave_id=wave.pk,
                subject=email,
                from_state=from_state,
                to_state=to_state,
            )
            for pk, org_id, email, _ in rows
        )
        batches = task_batches([(pk, size) for pk, _, _, size in rows], wave_engine(wave))
        transaction.on_commit(lambda: _queue(batches, phase))
    return claimed


def task_batches(rows: Iterable[tuple[int, int]], engine: Engine) -> list[list[int]]:
    """Group claimed mailboxes (id, size) into tasks by the engine's expected time: a mailbox that takes
    minutes gets a task of its own, so the workers share the slow ones out; mailboxes that take no time
    (the simulated engine at zero copy time, empty mailboxes) share a task, up to MIGRATION_TASK_MAILBOXES,
    so the broker round trip is paid once per batch rather than once per mailbox."""
    target = settings.MIGRATION_TASK_SECONDS
    batches: list[list[int]] = []
    batch: list[int] = []
    seconds = 0.0
    for pk, size in rows:
        expected = engine.expected_seconds(size)
        if batch and (seconds + expected > target or len(batch) >= settings.MIGRATION_TASK_MAILBOXES):
            batches.append(batch)
            batch, seconds = [], 0.0
        batch.append(pk)
        seconds += expected
    if batch:
        batches.append(batch)
    return batches


def _queue(batches: Iterable[list[int]], phase: str) -> None:
    from migrations_app.tasks import mailboxes_work

    for ids in batches:
        mailboxes_work.delay(ids, phase)
