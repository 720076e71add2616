"""Running claimed mailboxes: a run's lease, its journal of transitions (conditional on the lease, written in
small groups), the engine's progress callback (checkpoint and heartbeat), retries with back-off, and the batch
heartbeat of the mailboxes waiting their turn."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from migrations_app.engines import THROTTLED, Engine, PermanentError, RetryableError, SyncResult
from migrations_app.models import Mailbox, Wave
from migrations_app.services.events import event_record_many
from migrations_app.services.execution.clock import wave_pump_later
from migrations_app.services.execution.completion import waves_complete_if_done
from migrations_app.services.execution.lease import LeaseKeeper, connection_release, lease_renew
from migrations_app.services.execution.poison import run_ended, run_started, worker_lost
from migrations_app.services.execution.specs import mailbox_spec, wave_engine
from migrations_app.services.execution.states import (
    _CLAIM,
    CUTOVER,
    PHASES,
    SYNC,
    VERIFY_MISMATCH,
    LeaseLost,
    M,
    PauseRequested,
    W,
)
from migrations_app.services.execution.switch import cutover_switch

logger = logging.getLogger(__name__)


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
    stops the engine at its next report. `fence()` and `heartbeat()` are the copy pipeline's: the lease check
    before every write to the target (lease.LeaseKeeper) and the renewal while it waits on its workers."""

    def __init__(self, mailbox: Mailbox, journal: Journal, keeper: LeaseKeeper | None = None):
        self.mailbox = mailbox
        self.journal = journal
        self.keeper = keeper or LeaseKeeper(mailbox.pk, journal.lease)
        self.saved_at = time.monotonic()
        self.latest: tuple[int, int, dict] | None = None
        self.heartbeat_seconds = settings.MIGRATION_HEARTBEAT_SECONDS

    def __call__(self, items: int, size: int, checkpoint: dict) -> None:
        self.latest = (items, size, checkpoint)
        if self.journal.due():
            self.journal.flush()  # this mailbox is taking a while: write what finished before it
        if time.monotonic() - self.saved_at < settings.MIGRATION_PROGRESS_SECONDS:
            return
        self._renew(checkpoint=checkpoint, items_copied=items, bytes_copied=size)
        self.saved_at = time.monotonic()
        connection_release()

    def heartbeat(self) -> None:
        """The lease renewed on the run's own thread (the pipeline calls it while it waits on its workers)."""
        self._renew()
        connection_release()

    def fence(self) -> None:
        self.keeper.fence()

    def _renew(self, **fields) -> None:
        state = lease_renew(mailbox_id=self.mailbox.pk, lease=self.journal.lease, **fields)
        self.keeper.note(state)
        self.keeper.raise_unless_ours()

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


def _pacing(error: Exception, mailbox: Mailbox, extra: dict) -> bool:
    """A server's "slow down" (THROTTLED) to a run that copied something since it started."""
    if not isinstance(error, RetryableError) or error.code != THROTTLED:
        return False
    checkpoint = extra.get("checkpoint") or {}
    items = checkpoint.get("items", extra.get("items_copied", 0)) or 0
    return items > (mailbox.items_copied or 0)


def _failed(
    journal: Journal, mailbox: Mailbox, from_state: str, error: Exception, phase: str, progress
) -> None:
    code = getattr(error, "code", "") or type(error).__name__
    message = getattr(error, "message", "") or str(error)
    extra = progress.fields()
    checkpoint = getattr(error, "checkpoint", None)
    if checkpoint is not None:
        extra["checkpoint"] = checkpoint
    if _pacing(error, mailbox, extra):
        # Throttled after copying more than the run started with: pacing, not failing. Back after the
        # server's wait, the attempts unchanged, nobody asked to look at it.
        delay = max(error.retry_after or 0, 1.0)
        journal.move(
            mailbox,
            from_state,
            _CLAIM[phase][0],
            action="mailbox.paced",
            message=f"{code}: {message}",
            data={"code": code, "attempt": mailbox.attempts, "delay_s": round(delay, 1)},
            lease="",
            retry_at=timezone.now() + dt.timedelta(seconds=delay),
            **extra,
        )
        return
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
    if result.checkpoint.get("settings"):
        # the mailbox's settings as this pass left them (the exchange engine): the page and the CSV read them here
        fields["settings_report"] = mailbox.settings_report = result.checkpoint["settings"]
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


def _run_one(mailbox: Mailbox, phase: str, engine: Engine | None, journal: Journal, waves: _Waves) -> bool:
    """One mailbox's part of the run up to its switch; True when its final delta is done and it waits for the
    batch's switch (then it is run again, switched, for its catch-up delta and verification)."""
    wave = mailbox.wave
    state = _CLAIM[phase][1]
    keeper = LeaseKeeper(mailbox.pk, journal.lease).start()  # the heartbeat, whatever the engine does
    progress = _Progress(mailbox, journal, keeper)
    started = time.monotonic()
    try:
        if wave is None:
            raise PermanentError("NO_WAVE", "the mailbox is in no wave")
        spec = mailbox_spec(mailbox, wave)
        if phase == SYNC:
            connection_release()
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
        if mailbox.switch_status != Mailbox.SwitchStatus.SWITCHED:
            # The final delta (new items, and the flags, moves and deletions since the pre-stage:
            # engines.pipeline.delta); then the mailbox waits for its batch's switch (execution/switch.py).
            connection_release()
            result = engine.cutover(spec, mailbox.checkpoint, progress)
            journal.move(
                mailbox,
                state,
                M.CUTOVER,
                action="mailbox.final_delta",
                cutover_step=Mailbox.CutoverStep.SWITCH,
                **_done(mailbox, result, progress),
            )
            return True
        # The catch-up delta: what reached or changed on the source while its mail was being switched.
        connection_release()
        result = engine.cutover(spec, mailbox.checkpoint, progress)
        journal.move(
            mailbox,
            state,
            M.VERIFYING,
            action="mailbox.verifying",
            message="catch-up delta copied",
            cutover_step=Mailbox.CutoverStep.VERIFY,
            **_done(mailbox, result, progress),
        )
        state = M.VERIFYING
        if time.monotonic() - started > settings.MIGRATION_JOURNAL_SECONDS:
            journal.flush()  # a real copy: show "verifying" while the verification runs
        connection_release()
        verified = engine.verify(spec)
        if not verified.ok:
            folders = "; ".join(f.describe() for f in verified.differences[:5])
            raise PermanentError(VERIFY_MISMATCH, f"source and target differ in {folders}")
        journal.move(
            mailbox,
            state,
            M.MIGRATED,
            action="mailbox.migrated",
            lease="",
            attempts=0,
            paused=False,
            cutover_step="",
        )
    except LeaseLost:
        logger.warning("mailbox %s: lease lost (handed to another run): stopped", mailbox.pk)
        journal.lost.add(mailbox.pk)
        _record_lost(mailbox, phase, progress)
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
        keeper.stop()
        if time.monotonic() - started > settings.MIGRATION_JOURNAL_SECONDS or journal.due():
            journal.flush()
    return False


def _record_lost(mailbox: Mailbox, phase: str, progress: _Progress) -> None:
    """The run stopped because another run holds the mailbox now: said on its timeline (not a transition:
    the state is the other run's to change)."""
    items = progress.latest[0] if progress.latest else None
    event_record_many(
        [
            dict(
                action="mailbox.lease_lost",
                organisation_id=mailbox.organisation_id,
                mailbox_id=mailbox.pk,
                wave_id=mailbox.wave_id,
                subject=mailbox.email,
                message="this run lost its lease (the mailbox was handed to another run) and stopped writing",
                data={"phase": phase, "items_copied_by_then": items},
            )
        ]
    )


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
    to_switch: list[Mailbox] = []
    for mailbox in mailboxes:
        if not beat.still_held(mailbox.pk):
            continue
        if engine is None and mailbox.wave_id not in engines and mailbox.wave is not None:
            engines[mailbox.wave_id] = wave_engine(mailbox.wave)
        runs = run_started(mailbox.pk)
        if runs > settings.MIGRATION_MAX_DELIVERIES:  # the runs before this one all died: a poison pill
            worker_lost(journal, mailbox, _CLAIM[phase][1], runs - 1)
        elif _run_one(mailbox, phase, engine or engines.get(mailbox.wave_id), journal, waves):
            to_switch.append(mailbox)
        run_ended(mailbox.pk)
    if to_switch:
        # One switch for the batch (a PowerShell session switches many mailboxes), then each switched one
        # goes on to its catch-up delta and verification.
        def on_error(mailbox: Mailbox, error: Exception) -> None:
            _failed(journal, mailbox, M.CUTOVER, error, CUTOVER, _Progress(mailbox, journal))

        for mailbox in cutover_switch(to_switch, journal, on_error):
            _run_one(mailbox, CUTOVER, engine or engines.get(mailbox.wave_id), journal, waves)
    journal.flush()
    wave_ids = {m.wave_id for m in mailboxes if m.wave_id}
    # the wave whose last mailbox this run ended is completed now, not at the beat's next tick
    finished = set(waves_complete_if_done(wave_ids=wave_ids)) if wave_ids else set()
    for wave_id in wave_ids - finished:
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
