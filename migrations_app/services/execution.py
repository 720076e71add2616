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
import time
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
    SyncResult,
    get_engine,
)
from migrations_app.models import Endpoint, Mailbox, ProgrammeSettings, User, Wave
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.services.events import event_record, event_record_many

logger = logging.getLogger(__name__)

M = Mailbox.State
W = Wave.Status

SYNC = "sync"
CUTOVER = "cutover"
PHASES = (SYNC, CUTOVER)
# phase -> (claimed from, running in)
_CLAIM = {SYNC: (M.SCHEDULED, M.SYNCING), CUTOVER: (M.SYNCED, M.CUTOVER)}
ACTIVE_STATES = (M.SYNCING, M.CUTOVER, M.VERIFYING)
# What people may do in which state (the pages offer the buttons from the same tuples).
RETRYABLE = (M.FAILED,)
CANCELLABLE = (M.SCHEDULED, M.SYNCED, M.FAILED)
ROLLBACKABLE = (*CANCELLABLE, M.MIGRATED)
PAUSABLE = (M.SCHEDULED, *ACTIVE_STATES, M.SYNCED)
# Stable codes of our own, beside the engines' (engines.base).
VERIFY_MISMATCH = "VERIFY_MISMATCH"
RETRY_LIMIT = "RETRY_LIMIT"


class MailboxConflict(ValidationError):
    """The mailbox was not in the state the action needs: usually a worker or a person acted first."""


class LeaseLost(Exception):
    """This run no longer owns the mailbox (the reconciler handed it to another run): stop quietly."""


class PauseRequested(Exception):
    """A person paused the mailbox while it was being copied: stop, keep the checkpoint, hand it back."""


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
        target_user=mailbox.target_upn or mailbox.email,  # its UPN on the target, when the inventory gave one
        size_bytes=mailbox.size_bytes,
        item_count=mailbox.item_count,
        seed=mailbox.pk,
    )


def _is_graph(endpoint: Endpoint | None) -> bool:
    return endpoint is not None and endpoint.kind == Endpoint.Kind.GRAPH


def wave_engine(wave: Wave) -> Engine:
    """An Exchange 2013 source means the exchange engine (EWS export, Graph import); otherwise a Graph (Exchange
    Online) target means the graph engine (it reads IMAP); otherwise the source endpoint's kind; no endpoints
    means the simulated engine."""
    if wave.source_endpoint_id and wave.source_endpoint.kind == Endpoint.Kind.EXCHANGE:
        kind = "exchange"
    elif _is_graph(wave.target_endpoint):
        kind = "graph"
    else:
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


# --- running mailboxes --------------------------------------------------------------------------------------


def _take_leases(ids: list[int], state: str, now: dt.datetime) -> tuple[str, list[int]]:
    """One run's lease on the claimed mailboxes it was given: one conditional UPDATE (empty or stale lease),
    then the ids it now holds. A redelivered task whose first run is alive finds them taken."""
    lease = uuid.uuid4().hex
    stale = now - dt.timedelta(seconds=settings.MIGRATION_HEARTBEAT_STALE_SECONDS)
    Mailbox.objects.filter(pk__in=ids, state=state).filter(Q(lease="") | Q(heartbeat_at__lt=stale)).update(
        lease=lease, heartbeat_at=now, updated_at=now
    )
    held = sorted(Mailbox.objects.filter(pk__in=ids, lease=lease).values_list("id", flat=True))
    return lease, held


class _Transition:
    __slots__ = ("mailbox", "from_state", "to_state", "action", "message", "data", "fields")

    def __init__(self, mailbox, from_state, to_state, action, message, data, fields):
        self.mailbox = mailbox
        self.from_state = from_state
        self.to_state = to_state
        self.action = action
        self.message = message
        self.data = data
        self.fields = fields


class Journal:
    """A run's transitions, written in small groups: each is a conditional UPDATE on the mailbox's state and
    the run's lease, with its event, and a group shares one commit. A slow mailbox (a real copy) is written
    as soon as it finishes; mailboxes that finish in milliseconds are written together at most
    MIGRATION_JOURNAL_SECONDS later, so the control plane pays a commit per group rather than per step.
    Losing an unwritten group (the worker died) only repeats work the engines repeat safely."""

    def __init__(self, lease: str):
        self.lease = lease
        self.pending: list[_Transition] = []
        self.oldest = 0.0
        self.lost: set[int] = set()

    def move(self, mailbox, from_state, to_state, *, action, message="", data=None, **fields) -> None:
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append(_Transition(mailbox, from_state, to_state, action, message, data, fields))
        mailbox.state = to_state

    def due(self) -> bool:
        return bool(self.pending) and (
            len(self.pending) >= 500 or time.monotonic() - self.oldest >= settings.MIGRATION_JOURNAL_SECONDS
        )

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        # One row change per mailbox (its first from-state, its last to-state, every step's fields), and one
        # UPDATE per group of changes alike; the events of the changes that held, in their order.
        changes: dict[int, list[_Transition]] = {}
        for step in pending:
            if step.mailbox.pk not in self.lost:
                changes.setdefault(step.mailbox.pk, []).append(step)
        groups: dict[tuple, list[tuple[int, dict]]] = {}
        for pk, steps in changes.items():
            fields: dict = {}
            for step in steps:
                fields.update(step.fields)
            groups.setdefault((steps[0].from_state, steps[-1].to_state, tuple(sorted(fields))), []).append(
                (pk, fields)
            )
        now = timezone.now()
        with transaction.atomic():
            written: set[int] = set()
            for (from_state, to_state, names), rows in groups.items():
                written |= self._write(rows, from_state, to_state, names, now)
            for pk in set(changes) - written:
                self.lost.add(pk)
                logger.warning(
                    "mailbox %s: lease lost or state changed meanwhile; its steps not recorded", pk
                )
            event_record_many(
                dict(
                    action=step.action,
                    organisation_id=step.mailbox.organisation_id,
                    mailbox_id=step.mailbox.pk,
                    wave_id=step.mailbox.wave_id,
                    subject=step.mailbox.email,
                    from_state=step.from_state,
                    to_state=step.to_state,
                    message=step.message,
                    data=step.data or {},
                )
                for step in pending
                if step.mailbox.pk in written
            )

    def _write(self, rows, from_state: str, to_state: str, names: tuple, now) -> set[int]:
        """Apply one group of changes to the mailboxes still in `from_state` under this run's lease; returns
        their ids: one UPDATE for the group on PostgreSQL, one conditional UPDATE per row elsewhere."""
        if connection.vendor != "postgresql":
            return {
                pk
                for pk, fields in rows
                if Mailbox.objects.filter(pk=pk, state=from_state, lease=self.lease).update(
                    state=to_state, updated_at=now, heartbeat_at=now, **fields
                )
            }
        # PostgreSQL: one UPDATE ... FROM (VALUES ...) with the same conditions, RETURNING the rows it changed.
        meta = Mailbox._meta
        columns = [meta.get_field(name) for name in names]
        row_sql = "(" + ", ".join(["%s::bigint", *(f"%s::{f.db_type(connection)}" for f in columns)]) + ")"
        params: list = [to_state, now, now]
        for pk, fields in rows:
            params.append(pk)
            params.extend(f.get_db_prep_save(fields[f.name], connection) for f in columns)
        params += [from_state, self.lease]
        sets = "".join(f", {f.column} = v.{f.column}" for f in columns)
        sql = (
            f"UPDATE {meta.db_table} AS m SET state = %s, updated_at = %s, heartbeat_at = %s{sets} "
            f"FROM (VALUES {', '.join([row_sql] * len(rows))}) AS v(id{''.join(', ' + f.column for f in columns)}) "
            "WHERE m.id = v.id AND m.state = %s AND m.lease = %s RETURNING m.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {pk for (pk,) in cursor.fetchall()}


class _Progress:
    """The engine's progress callback: items, bytes and checkpoint saved (conditional on the lease, which
    refreshes the heartbeat) after each folder or chunk, at most once per MIGRATION_PROGRESS_SECONDS, so a
    restart resumes from there; a lost lease (the mailbox was paused, cancelled or handed to another run)
    stops the engine at its next report."""

    def __init__(self, mailbox: Mailbox, journal: Journal):
        self.mailbox = mailbox
        self.journal = journal
        self.saved_at = time.monotonic()
        self.latest: tuple[int, int, dict] | None = None

    def __call__(self, items: int, size: int, checkpoint: dict) -> None:
        self.latest = (items, size, checkpoint)
        if self.journal.due():
            self.journal.flush()  # this mailbox is taking a while: write what finished before it
        if time.monotonic() - self.saved_at < settings.MIGRATION_PROGRESS_SECONDS:
            return
        now = timezone.now()
        if not Mailbox.objects.filter(pk=self.mailbox.pk, lease=self.journal.lease, paused=False).update(
            checkpoint=checkpoint, items_copied=items, bytes_copied=size, heartbeat_at=now, updated_at=now
        ):
            if Mailbox.objects.filter(pk=self.mailbox.pk, lease=self.journal.lease, paused=True).exists():
                raise PauseRequested(self.mailbox.pk)
            raise LeaseLost(self.mailbox.pk)
        self.saved_at = time.monotonic()

    def fields(self) -> dict:
        if self.latest is None:
            return {}
        items, size, checkpoint = self.latest
        return {"items_copied": items, "bytes_copied": size, "checkpoint": checkpoint}


def retry_delay(attempt: int, *, hint: float | None = None) -> float:
    """Exponential back-off with jitter: base * 2^(attempt-1), capped, then a random point in its upper half
    so a throttled server is not hit by every mailbox at the same second. A server's Retry-After is a floor."""
    delay = min(
        settings.MIGRATION_RETRY_MAX_SECONDS, settings.MIGRATION_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    )
    delay = delay / 2 + random.uniform(0, delay / 2)
    return max(delay, hint or 0)


def _failed(
    journal: Journal, mailbox: Mailbox, from_state: str, error: Exception, phase: str, progress
) -> None:
    code = getattr(error, "code", "") or type(error).__name__
    message = getattr(error, "message", "") or str(error)
    extra = progress.fields()
    checkpoint = getattr(error, "checkpoint", None)
    if checkpoint is not None:
        extra["checkpoint"] = checkpoint
    extra["needed_attention"] = True  # for good: the dashboard's share of mailboxes that needed attention
    attempts = mailbox.attempts + 1
    if isinstance(error, RetryableError) and attempts <= settings.MIGRATION_RETRY_LIMIT:
        delay = retry_delay(attempts, hint=error.retry_after)
        journal.move(
            mailbox,
            from_state,
            _CLAIM[phase][0],
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
    journal.move(
        mailbox,
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


def _skipped(mailbox: Mailbox, result: SyncResult) -> dict:
    """Items the engine could not copy, kept on the mailbox (folder, subject, size, reason), never dropped:
    the ones already listed plus this pass's."""
    if not result.skipped:
        return {}
    known = list(mailbox.skipped_items or [])
    seen = {(i.get("folder"), i.get("uid"), i.get("subject")) for i in known}
    for item in result.skipped:
        entry = item.as_dict()
        if (entry.get("folder"), entry.get("uid"), entry.get("subject")) not in seen:
            known.append(entry)
    return {"skipped_items": known}


def _done(mailbox: Mailbox, result: SyncResult, progress: _Progress) -> dict:
    """The fields a successful copy leaves on the mailbox (and on the loaded object, for a next pass)."""
    fields = {
        **progress.fields(),
        **_skipped(mailbox, result),
        "checkpoint": result.checkpoint,
        "attempts": 0,
        "last_error_code": "",
        "last_error_message": "",
    }
    mailbox.checkpoint = result.checkpoint
    mailbox.skipped_items = fields.get("skipped_items", mailbox.skipped_items)
    return fields


class _Waves:
    """Whether a wave is running with its window open, read again at most once a second (a pause or a
    cancellation is seen by a batch in progress)."""

    def __init__(self):
        self.seen: dict[int, tuple[float, tuple]] = {}

    def window_open(self, wave: Wave) -> bool:
        at, row = self.seen.get(wave.pk, (0.0, None))
        if row is None or time.monotonic() - at > 1.0:
            row = Wave.objects.filter(pk=wave.pk).values_list("status", "starts_at", "ends_at").first()
            self.seen[wave.pk] = (time.monotonic(), row)
        return row is not None and row[0] == W.RUNNING and row[1] <= timezone.now() < row[2]


def _run_one(mailbox: Mailbox, phase: str, engine: Engine | None, journal: Journal, waves: _Waves) -> None:
    wave = mailbox.wave
    state = _CLAIM[phase][1]
    progress = _Progress(mailbox, journal)
    started = time.monotonic()
    try:
        if wave is None:
            raise PermanentError("NO_WAVE", "the mailbox is in no wave")
        spec = mailbox_spec(mailbox, wave)
        if phase == SYNC:
            result = engine.sync(spec, mailbox.checkpoint, progress)
            if not waves.window_open(wave):
                journal.move(
                    mailbox,
                    state,
                    M.SYNCED,
                    action="mailbox.synced",
                    lease="",
                    **_done(mailbox, result, progress),
                )
                return
            # Synced inside an open window: it keeps its slot and goes straight on to its cutover (the
            # wave's pump would pick it first anyway), without another claim and task.
            journal.move(
                mailbox, state, M.SYNCED, action="mailbox.synced", **_done(mailbox, result, progress)
            )
            journal.move(mailbox, M.SYNCED, M.CUTOVER, action="mailbox.claimed", data={"straight_on": True})
            phase, state = CUTOVER, M.CUTOVER
        result = engine.sync(spec, mailbox.checkpoint, progress)
        journal.move(
            mailbox, state, M.VERIFYING, action="mailbox.verifying", **_done(mailbox, result, progress)
        )
        state = M.VERIFYING
        if time.monotonic() - started > settings.MIGRATION_JOURNAL_SECONDS:
            journal.flush()  # a real copy: show "verifying" while the verification runs
        verified = engine.verify(spec)
        if not verified.ok:
            folders = ", ".join(f.folder for f in verified.differences[:5])
            raise PermanentError(VERIFY_MISMATCH, f"source and target differ in {folders}")
        journal.move(
            mailbox, state, M.MIGRATED, action="mailbox.migrated", lease="", attempts=0, paused=False
        )
    except LeaseLost:
        logger.warning("mailbox %s: lease lost (handed to another run): stopped", mailbox.pk)
        journal.lost.add(mailbox.pk)
    except PauseRequested:
        journal.move(
            mailbox,
            state,
            _CLAIM[phase][0],
            action="mailbox.stopped",
            message="paused while copying: stopped at a checkpoint, resumes from there",
            lease="",
            **progress.fields(),
        )
    except (RetryableError, PermanentError) as error:
        _failed(journal, mailbox, state, error, phase, progress)
    finally:
        if time.monotonic() - started > settings.MIGRATION_JOURNAL_SECONDS or journal.due():
            journal.flush()


class _BatchHeartbeat:
    """The mailboxes of a batch that wait their turn keep a live heartbeat: refreshed, with a check that the
    run still holds them, at least three times per staleness period. One that went stale while a slow one
    ran may have been handed to another run by the reconciler: it is skipped, never copied twice at once."""

    def __init__(self, journal: Journal, held: list[int]):
        self.journal = journal
        self.waiting = list(held)
        self.held = set(held)
        self.at = time.monotonic()

    def still_held(self, pk: int) -> bool:
        if time.monotonic() - self.at > settings.MIGRATION_HEARTBEAT_STALE_SECONDS / 3:
            self.journal.flush()
            lease = self.journal.lease
            waiting = self.waiting[self.waiting.index(pk) :]
            Mailbox.objects.filter(pk__in=waiting, lease=lease).update(heartbeat_at=timezone.now())
            self.held = set(Mailbox.objects.filter(pk__in=waiting, lease=lease).values_list("id", flat=True))
            self.at = time.monotonic()
        if pk not in self.held:
            self.journal.lost.add(pk)
            logger.warning("mailbox %s: handed to another run while it waited in this batch: skipped", pk)
            return False
        return True


def mailboxes_run(*, mailbox_ids: Iterable[int], phase: str, engine: Engine | None = None) -> list[Mailbox]:
    """Run a batch of claimed mailboxes, one after another, under one lease: the pre-stage sync (syncing ->
    synced, and straight on to the cutover when the window is open) or the cutover (cutover -> verifying ->
    migrated). Returns the mailboxes this run held; ids another run holds, or no longer in the phase's
    state, are left alone. Then fills the waves' free slots, so a wave keeps moving without the beat."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    lease, held = _take_leases(list(mailbox_ids), _CLAIM[phase][1], timezone.now())
    if not held:
        logger.info("mailboxes %s: not %s or another run holds them: nothing to do", mailbox_ids, phase)
        return []
    journal = Journal(lease)
    waves = _Waves()
    mailboxes = list(
        Mailbox.objects.filter(pk__in=held)
        .select_related("organisation", "wave", "wave__source_endpoint", "wave__target_endpoint")
        .order_by("id")
    )
    beat = _BatchHeartbeat(journal, held)
    engines: dict[int, Engine] = {}  # one per wave for the whole batch (the graph engine's token is reused)
    for mailbox in mailboxes:
        if not beat.still_held(mailbox.pk):
            continue
        if engine is None and mailbox.wave_id not in engines and mailbox.wave is not None:
            engines[mailbox.wave_id] = wave_engine(mailbox.wave)
        _run_one(mailbox, phase, engine or engines.get(mailbox.wave_id), journal, waves)
    journal.flush()
    for wave_id in {m.wave_id for m in mailboxes if m.wave_id}:
        transaction.on_commit(lambda wave_id=wave_id: wave_pump_later(wave_id))
    return [m for m in mailboxes if m.pk not in journal.lost]


def mailbox_run(*, mailbox_id: int, phase: str, engine: Engine | None = None) -> Mailbox | None:
    """One mailbox through one phase; None if another run holds it."""
    ran = mailboxes_run(mailbox_ids=[mailbox_id], phase=phase, engine=engine)
    return ran[0] if ran else None


def mailbox_run_sync(*, mailbox_id: int, engine: Engine | None = None) -> Mailbox | None:
    """The pre-stage copy of a claimed mailbox: syncing -> synced. None if another run owns it."""
    return mailbox_run(mailbox_id=mailbox_id, phase=SYNC, engine=engine)


def mailbox_run_cutover(*, mailbox_id: int, engine: Engine | None = None) -> Mailbox | None:
    """The final delta and the verification of a claimed mailbox: cutover -> verifying -> migrated."""
    return mailbox_run(mailbox_id=mailbox_id, phase=CUTOVER, engine=engine)


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
        rows = list(
            Mailbox.objects.filter(
                wave=wave, carried_over=False, state__in=(M.SCHEDULED, M.SYNCING, M.SYNCED, M.FAILED)
            ).values_list("id", "organisation_id", "email", "state")
        )
        if not rows:
            return 0
        Mailbox.objects.filter(pk__in=[r[0] for r in rows]).update(carried_over=True, updated_at=now)
        message = f"not finished when {wave.name}'s window closed: carried over, to be placed in another wave"
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
            message=f"{len(rows)} mailbox(es) not finished when the window closed",
            data={"mailboxes": len(rows)},
        )
    return len(rows)


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
            transaction.on_commit(lambda ids=ids, phase=phase: _queue([[pk] for pk in ids], phase))
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
    return _person_move(mailbox, actor, RETRYABLE, to_state, "mailbox.retried", reason, **_CLEARED)


_RUNNING_MESSAGE = "it is being copied now: pause it first, and act once it has stopped (within seconds)"


def _refuse_running(mailbox: Mailbox) -> None:
    if mailbox.state in ACTIVE_STATES:
        raise MailboxConflict(f"{mailbox.email} is {mailbox.get_state_display().lower()}: {_RUNNING_MESSAGE}")


@transaction.atomic
def mailbox_rollback(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Back to ready and out of its wave, to be planned again: before its cutover (scheduled, synced,
    failed) or after it (migrated: mail is delivered to the old system again; a reason is required).
    The checkpoint is kept, so its next copy is incremental. Never while a worker is copying it."""
    if mailbox.state == M.MIGRATED and not reason.strip():
        raise ValidationError("Give the reason for rolling back a migrated mailbox")
    return _out_of_wave(mailbox, actor, ROLLBACKABLE, "mailbox.rolled_back", reason)


def _out_of_wave(mailbox: Mailbox, actor: User, from_states: tuple, action: str, reason: str) -> Mailbox:
    """Back to ready and out of its wave (checkpoint kept), refused while a worker copies it."""
    require_administer(actor, mailbox.organisation)
    _refuse_running(mailbox)
    fields = {"wave": None, "carried_over": False, "paused": False, **_CLEARED}
    return _person_move(mailbox, actor, from_states, M.READY, action, reason, **fields)


@transaction.atomic
def mailbox_cancel(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Take a mailbox out of its wave before its cutover: back to ready, to be planned again (its
    checkpoint kept). Never while a worker is copying it: pause first."""
    return _out_of_wave(mailbox, actor, CANCELLABLE, "mailbox.cancelled", reason)


@transaction.atomic
def mailbox_pause(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Hold a mailbox: it is not claimed until resumed. One being copied stops at its next progress report
    (within seconds), keeps its checkpoint and goes back to scheduled (or synced, in its cutover)."""
    require_administer(actor, mailbox.organisation)
    updated = Mailbox.objects.filter(pk=mailbox.pk, state__in=PAUSABLE, paused=False).update(
        paused=True, updated_at=timezone.now()
    )
    mailbox.refresh_from_db()
    if not updated:
        if mailbox.paused:
            raise MailboxConflict(f"{mailbox.email} is already paused")
        raise MailboxConflict(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: only a mailbox waiting for or in "
            "its copy can be paused"
        )
    event_record(
        action="mailbox.paused",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=mailbox.wave,
        subject=mailbox.email,
        message=reason,
        data={"state": mailbox.state},
    )
    return mailbox


@transaction.atomic
def mailbox_resume(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Release a paused mailbox: claimed again with its wave's next free slot (resuming from its
    checkpoint)."""
    require_administer(actor, mailbox.organisation)
    if not Mailbox.objects.filter(pk=mailbox.pk, paused=True).update(paused=False, updated_at=timezone.now()):
        raise MailboxConflict(f"{mailbox.email} is not paused")
    mailbox.refresh_from_db()
    event_record(
        action="mailbox.resumed",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=mailbox.wave,
        subject=mailbox.email,
        message=reason,
    )
    if mailbox.wave_id and mailbox.wave.status == W.RUNNING:
        transaction.on_commit(lambda: wave_pump_later(mailbox.wave_id))
    return mailbox


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
                RETRYABLE,
                M.SCHEDULED,
                "mailbox.retried",
                reason or f"retry all {code}",
                **_CLEARED,
            )
            count += 1
        except MailboxConflict:
            continue
    return count
