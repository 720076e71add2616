"""Running the waves: claim mailboxes, run the engine, record every transition.

    scheduled --claim--> syncing --engine.sync--> synced --claim (window open)--> cutover
        --engine.sync (delta)--> verifying --engine.verify--> migrated
    retryable error: back to scheduled / synced with attempts+1 and retry_at (back-off with jitter)
    permanent error, or over MIGRATION_RETRY_LIMIT: failed, with a stable code and message

Who owns a mailbox: `mailbox_claim` moves a batch into syncing / cutover inside one transaction that holds
row locks on the endpoints and the programme settings row, so the concurrency caps are counted in the
database and hold across every worker process and machine. The worker that runs a claimed mailbox then takes
a lease (a conditional UPDATE on an empty or stale lease) and every write it makes afterwards is conditional
on that lease: a task redelivered by the broker while the first run is alive finds the lease taken and does
nothing, and a run that lost its lease (the reconciler gave it away) stops at its next progress report.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from migrations_app.engines import (
    EndpointSpec,
    Engine,
    MailboxSpec,
    PermanentError,
    RetryableError,
    get_engine,
)
from migrations_app.models import Endpoint, Mailbox, ProgrammeSettings, User, Wave
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.services.events import event_record

logger = logging.getLogger(__name__)

M = Mailbox.State
W = Wave.Status

SYNC = "sync"
CUTOVER = "cutover"
PHASES = (SYNC, CUTOVER)
# phase -> (claimed from, running in)
_CLAIM = {SYNC: (M.SCHEDULED, M.SYNCING), CUTOVER: (M.SYNCED, M.CUTOVER)}
ACTIVE_STATES = (M.SYNCING, M.CUTOVER, M.VERIFYING)
# Stable codes of our own, beside the engines' (engines.base).
VERIFY_MISMATCH = "VERIFY_MISMATCH"
RETRY_LIMIT = "RETRY_LIMIT"


class MailboxConflict(ValidationError):
    """The mailbox was not in the state the action needs: usually a worker or a person acted first."""


class LeaseLost(Exception):
    """This run no longer owns the mailbox (the reconciler handed it to another run): stop quietly."""


# --- engines and specs --------------------------------------------------------------------------------------


def _endpoint_spec(endpoint: Endpoint | None) -> EndpointSpec:
    if endpoint is None:
        return EndpointSpec(kind="simulated")
    return EndpointSpec(
        kind=endpoint.kind,
        host=endpoint.address,
        port=endpoint.port or 0,
        security=endpoint.security,
        username=endpoint.username,
        password=endpoint.secret,
        options=dict(endpoint.options or {}),
    )


def mailbox_spec(mailbox: Mailbox, wave: Wave) -> MailboxSpec:
    return MailboxSpec(
        email=mailbox.email,
        source=_endpoint_spec(wave.source_endpoint),
        target=_endpoint_spec(wave.target_endpoint),
        source_user=mailbox.source_identity or mailbox.email,
        target_user=mailbox.email,
        size_bytes=mailbox.size_bytes,
        item_count=mailbox.item_count,
        seed=mailbox.pk,
    )


def wave_engine(wave: Wave) -> Engine:
    """The engine is the source endpoint's kind; no endpoints means the simulated engine."""
    kind = wave.source_endpoint.kind if wave.source_endpoint_id else "simulated"
    return get_engine(kind, **settings.MIGRATION_ENGINE_OPTIONS.get(kind, {}))


# --- claiming -----------------------------------------------------------------------------------------------


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
        candidates = (
            Mailbox.objects.filter(wave=wave, state=from_state, carried_over=False)
            .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
            .order_by("id")
        )
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
        for mailbox in Mailbox.objects.filter(pk__in=claimed).select_related("organisation"):
            event_record(
                action="mailbox.claimed",
                organisation=mailbox.organisation,
                mailbox=mailbox,
                wave=wave,
                subject=mailbox.email,
                from_state=from_state,
                to_state=to_state,
            )
        transaction.on_commit(lambda: _queue(claimed, phase))
    return claimed


def _queue(ids: Iterable[int], phase: str) -> None:
    from migrations_app.tasks import mailbox_work

    for pk in ids:
        mailbox_work.delay(pk, phase)


# --- running one mailbox ------------------------------------------------------------------------------------


def _take_lease(mailbox_id: int, state: str, now: dt.datetime) -> str | None:
    lease = uuid.uuid4().hex
    stale = now - dt.timedelta(seconds=settings.MIGRATION_HEARTBEAT_STALE_SECONDS)
    taken = (
        Mailbox.objects.filter(pk=mailbox_id, state=state)
        .filter(Q(lease="") | Q(heartbeat_at__lt=stale))
        .update(lease=lease, heartbeat_at=now, updated_at=now)
    )
    return lease if taken else None


def _move(
    mailbox: Mailbox,
    held: str,
    from_state: str,
    to_state: str,
    *,
    action: str,
    message: str = "",
    data=None,
    **fields,
) -> None:
    """A transition of a leased mailbox: conditional on the state and the lease, with its event."""
    now = timezone.now()
    with transaction.atomic():
        updated = Mailbox.objects.filter(pk=mailbox.pk, state=from_state, lease=held).update(
            state=to_state, updated_at=now, heartbeat_at=now, **fields
        )
        if not updated:
            raise LeaseLost(mailbox.pk)
        event_record(
            action=action,
            organisation=mailbox.organisation,
            mailbox=mailbox,
            wave=mailbox.wave,
            subject=mailbox.email,
            from_state=from_state,
            to_state=to_state,
            message=message,
            data=data,
        )
    mailbox.state = to_state


def _progress(mailbox: Mailbox, lease: str):
    def progress(items: int, size: int, checkpoint: dict) -> None:
        # Saved after every folder or chunk, so a restart resumes from here instead of starting over.
        now = timezone.now()
        if not Mailbox.objects.filter(pk=mailbox.pk, lease=lease).update(
            checkpoint=checkpoint, items_copied=items, bytes_copied=size, heartbeat_at=now, updated_at=now
        ):
            raise LeaseLost(mailbox.pk)

    return progress


def retry_delay(attempt: int, *, hint: float | None = None) -> float:
    """Exponential back-off with jitter: base * 2^(attempt-1), capped, then a random point in its upper half
    so a throttled server is not hit by every mailbox at the same second. A server's Retry-After is a floor."""
    delay = min(
        settings.MIGRATION_RETRY_MAX_SECONDS, settings.MIGRATION_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    )
    delay = delay / 2 + random.uniform(0, delay / 2)
    return max(delay, hint or 0)


def _failed(mailbox: Mailbox, lease: str, from_state: str, error: Exception, phase: str) -> None:
    code = getattr(error, "code", "") or type(error).__name__
    message = getattr(error, "message", "") or str(error)
    checkpoint = getattr(error, "checkpoint", None)
    extra = {"checkpoint": checkpoint} if checkpoint is not None else {}
    extra["needed_attention"] = True  # for good: the dashboard's share of mailboxes that needed attention
    attempts = mailbox.attempts + 1
    if isinstance(error, RetryableError) and attempts <= settings.MIGRATION_RETRY_LIMIT:
        back_to = _CLAIM[phase][0]
        delay = retry_delay(attempts, hint=error.retry_after)
        _move(
            mailbox,
            lease,
            from_state,
            back_to,
            action="mailbox.retry_scheduled",
            message=f"{code}: {message}",
            data={"code": code, "attempt": attempts, "delay_s": round(delay, 1)},
            attempts=attempts,
            lease="",
            retry_at=timezone.now() + dt.timedelta(seconds=delay),
            last_error_code=code,
            last_error_message=message,
            **extra,
        )
        return
    if isinstance(error, RetryableError):
        message = f"gave up after {attempts - 1} retries; last error {code}: {message}"
    _move(
        mailbox,
        lease,
        from_state,
        M.FAILED,
        action="mailbox.failed",
        message=f"{code}: {message}",
        data={"code": code, "attempt": attempts},
        attempts=attempts,
        lease="",
        retry_at=None,
        last_error_code=code,
        last_error_message=message,
        **extra,
    )


def _load(mailbox_id: int) -> Mailbox:
    return Mailbox.objects.select_related(
        "organisation", "wave", "wave__source_endpoint", "wave__target_endpoint"
    ).get(pk=mailbox_id)


def mailbox_run_sync(*, mailbox_id: int, engine: Engine | None = None) -> Mailbox | None:
    """The pre-stage copy of a claimed mailbox: syncing -> synced. None if another run owns it."""
    return _run(mailbox_id, SYNC, engine)


def mailbox_run_cutover(*, mailbox_id: int, engine: Engine | None = None) -> Mailbox | None:
    """The final delta and the verification of a claimed mailbox: cutover -> verifying -> migrated."""
    return _run(mailbox_id, CUTOVER, engine)


def mailbox_run(*, mailbox_id: int, phase: str, engine: Engine | None = None) -> Mailbox | None:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return _run(mailbox_id, phase, engine)


def _run(mailbox_id: int, phase: str, engine: Engine | None) -> Mailbox | None:
    running = _CLAIM[phase][1]
    lease = _take_lease(mailbox_id, running, timezone.now())
    if lease is None:
        logger.info("mailbox %s is not %s or another run holds it: nothing to do", mailbox_id, running)
        return None
    mailbox = _load(mailbox_id)
    wave = mailbox.wave
    state = running
    try:
        if wave is None:
            raise PermanentError("NO_WAVE", "the mailbox is in no wave")
        engine = engine or wave_engine(wave)
        spec = mailbox_spec(mailbox, wave)
        result = engine.sync(spec, mailbox.checkpoint, _progress(mailbox, lease))
        done = {
            "checkpoint": result.checkpoint,
            "attempts": 0,
            "last_error_code": "",
            "last_error_message": "",
        }
        if phase == SYNC:
            _move(mailbox, lease, state, M.SYNCED, action="mailbox.synced", lease="", **done)
        else:
            _move(mailbox, lease, state, M.VERIFYING, action="mailbox.verifying", **done)
            state = M.VERIFYING
            verified = engine.verify(spec)
            if not verified.ok:
                folders = ", ".join(f.folder for f in verified.differences[:5])
                raise PermanentError(VERIFY_MISMATCH, f"source and target differ in {folders}")
            _move(mailbox, lease, state, M.MIGRATED, action="mailbox.migrated", lease="", attempts=0)
    except LeaseLost:
        logger.warning("mailbox %s: lease lost, another run has it", mailbox_id)
        return None
    except (RetryableError, PermanentError) as error:
        try:
            _failed(mailbox, lease, state, error, phase)
        except LeaseLost:
            return None
    if wave is not None:
        transaction.on_commit(lambda: wave_pump_later(wave.pk))
    return mailbox


# --- the waves ----------------------------------------------------------------------------------------------


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


def _unfinished(wave: Wave):
    return Mailbox.objects.filter(wave=wave, carried_over=False).exclude(state=M.MIGRATED)


def wave_complete_if_done(*, wave: Wave) -> bool:
    """running -> completed when every mailbox is migrated or carried over: one conditional UPDATE."""
    with transaction.atomic():
        done = (
            Wave.objects.filter(pk=wave.pk, status=W.RUNNING)
            .exclude(Exists(_unfinished(wave).filter(wave=OuterRef("pk"))))
            .update(status=W.COMPLETED, updated_at=timezone.now())
        )
        if done:
            wave.status = W.COMPLETED
            event_record(
                action="wave.completed",
                wave=wave,
                subject=wave.name,
                from_state=W.RUNNING,
                to_state=W.COMPLETED,
                data={"carried_over": Mailbox.objects.filter(wave=wave, carried_over=True).count()},
            )
    return bool(done)


def wave_carry_over(*, wave: Wave, now: dt.datetime | None = None) -> int:
    """The window has closed: what has not started its cutover is not cut over late but carried over for the
    programme office to place in another wave. Mailboxes already cutting over finish."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Mailbox.objects.filter(
                wave=wave, carried_over=False, state__in=(M.SCHEDULED, M.SYNCING, M.SYNCED, M.FAILED)
            ).values_list("id", flat=True)
        )
        if not ids:
            return 0
        Mailbox.objects.filter(pk__in=ids).update(carried_over=True, updated_at=now)
        # One event for the wave (a window's worth of ids could be 22,000 rows of events otherwise).
        event_record(
            action="wave.carried_over",
            wave=wave,
            subject=wave.name,
            message=f"{len(ids)} mailbox(es) not finished when the window closed",
            data={"mailboxes": len(ids), "first_ids": ids[:100]},
        )
    return len(ids)


def wave_tick(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The beat's every-minute pass over the waves that can move: start the pre-stage of approved waves whose
    time has come, fill the running ones, carry over at window close, complete what is done."""
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
    for wave in Wave.objects.filter(status=W.RUNNING).select_related("source_endpoint", "target_endpoint"):
        if now >= wave.ends_at:
            stats["carried_over"] += wave_carry_over(wave=wave, now=now)
            stats["completed"] += int(wave_complete_if_done(wave=wave))
            continue
        pumped = wave_pump(wave=wave, now=now)
        stats["claimed"] += pumped["cutover"] + pumped["sync"]
        stats["completed"] += pumped["completed"]
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
            transaction.on_commit(lambda ids=ids, phase=phase: _queue(ids, phase))
    return [pk for pk, _ in requeued]


# --- people's actions ---------------------------------------------------------------------------------------


def _person_move(
    mailbox: Mailbox,
    actor: User,
    from_states: tuple[str, ...],
    to_state: str,
    action: str,
    reason: str,
    **fields,
) -> Mailbox:
    before = mailbox.state
    now = timezone.now()
    updated = Mailbox.objects.filter(pk=mailbox.pk, state__in=from_states).update(
        state=to_state, updated_at=now, **fields
    )
    if not updated:
        current = Mailbox.objects.filter(pk=mailbox.pk).values_list("state", flat=True).first()
        allowed = " or ".join(from_states)
        raise MailboxConflict(
            f"{mailbox.email} is {current} now, and this needs it {allowed}: reload to see the latest"
        )
    wave = mailbox.wave
    mailbox.refresh_from_db()
    event_record(
        action=action,
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=wave,
        subject=mailbox.email,
        from_state=before if before in from_states else from_states[0],
        to_state=to_state,
        message=reason,
    )
    return mailbox


_CLEARED = {"attempts": 0, "retry_at": None, "last_error_code": "", "last_error_message": "", "lease": ""}


@transaction.atomic
def mailbox_retry(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """A failed mailbox goes back to scheduled (its checkpoint kept, so the copy resumes). A trust admin for
    their own organisation's mailboxes; the programme office for any."""
    require_administer(actor, mailbox.organisation)
    to_state = M.SCHEDULED if mailbox.wave_id else M.READY
    return _person_move(mailbox, actor, (M.FAILED,), to_state, "mailbox.retried", reason, **_CLEARED)


@transaction.atomic
def mailbox_rollback(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Take a mailbox out of its wave, back to ready, when no worker is running it."""
    require_administer(actor, mailbox.organisation)
    return _person_move(
        mailbox,
        actor,
        (M.SCHEDULED, M.SYNCED, M.FAILED),
        M.READY,
        "mailbox.rolled_back",
        reason,
        wave=None,
        carried_over=False,
        **_CLEARED,
    )


@transaction.atomic
def wave_retry_failures(*, wave: Wave, actor: User, code: str, reason: str = "") -> int:
    """Retry every failed mailbox of the wave with this error code (after the cause is fixed: credentials
    corrected, targets provisioned). Programme office only. One event per mailbox retried."""
    require_programme_office(actor)
    count = 0
    failed = Mailbox.objects.filter(wave=wave, state=M.FAILED, last_error_code=code).select_related(
        "organisation", "wave"
    )
    for mailbox in failed.order_by("id").iterator():
        try:
            _person_move(
                mailbox,
                actor,
                (M.FAILED,),
                M.SCHEDULED,
                "mailbox.retried",
                reason or f"retry all {code}",
                **_CLEARED,
            )
            count += 1
        except MailboxConflict:
            continue
    return count
