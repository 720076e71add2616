"""Readiness checks: engine pre-flight for every mailbox of an organisation, a wave, or a chosen set, run by
the workers in batches, each mailbox written *ready* or *blocked* with a stable code and the engine's words.

    readiness_check_start (page, API, beat) -> on commit: task readiness_check_dispatch
      -> the mailbox ids read in id order, a page at a time; one task per batch of READINESS_BATCH_MAILBOXES
      -> readiness_batch_run: pre-flight each mailbox (one engine per batch), then ONE conditional UPDATE for
         the batch (state, code, reason, checked_at), one INSERT of events for those whose state changed, one
         UPDATE of the check's counts. Transient trouble (RetryableError) is queued again with back-off, never
         written as blocked; past READINESS_RETRY_LIMIT the mailbox is counted as not checked, left as it was.

Caps: a batch holds one connection to each endpoint it checks against, and takes one of the endpoint's
`max_concurrency` slots (the same cap the copies use) for as long as it runs, less the copies already running
on the endpoint. A batch that finds no free slot is queued again a few seconds later.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from migrations_app.engines import (
    EndpointSpec,
    Engine,
    EngineError,
    MailboxSpec,
    RetryableError,
    get_engine,
)
from migrations_app.models import (
    Endpoint,
    Mailbox,
    Organisation,
    ProgrammeSettings,
    ReadinessCheck,
    User,
    Wave,
)
from migrations_app.selectors.scoping import (
    organisations_administered_by,
    require_administer,
    require_programme_office,
)
from migrations_app.services.events import event_record, event_record_many
from migrations_app.services.execution.specs import engine_kind

logger = logging.getLogger(__name__)
M = Mailbox.State
RC = ReadinessCheck.Status
# The states a check may write over: not planned into a running wave yet, not retired.
CHECKABLE = (M.INVENTORIED, M.READY, M.BLOCKED)
# Copies running on an endpoint take its slots too (services.execution's ACTIVE_STATES).
_COPYING = (M.SYNCING, M.CUTOVER, M.VERIFYING)
_PAGE = 5000


class NoSlot(Exception):
    """Every slot of an endpoint is taken: try the batch again shortly."""


# --- starting a check ---------------------------------------------------------------------------------------


@transaction.atomic
def readiness_check_start(
    *,
    actor: User | None,
    organisation: Organisation | None = None,
    wave: Wave | None = None,
    mailbox_ids: Iterable[int] | None = None,
    unchecked: bool = False,
    queue: bool = True,
) -> ReadinessCheck:
    """Start a check of an organisation's mailboxes (its admins or the programme office), a wave's or a chosen
    set (the programme office; a trust admin only for mailboxes of organisations they administer), or of every
    mailbox in the programme never checked yet (`unchecked`, the programme office: after a national load). A
    check of the same organisation (or a programme-wide one) still queued or running is returned instead of a
    second one. actor=None: the beat, or an operator."""
    if sum(x is not None for x in (organisation, wave, mailbox_ids)) + bool(unchecked) != 1:
        raise ValidationError("Check one organisation, one wave, a list of mailboxes or every unchecked one")
    ids: list[int] | None = None
    if unchecked:
        if actor is not None:
            require_programme_office(actor)
        running = ReadinessCheck.objects.filter(
            organisation__isnull=True,
            wave__isnull=True,
            mailbox_ids__isnull=True,
            status__in=(RC.QUEUED, RC.RUNNING),
        ).first()
        if running is not None:
            return running
    elif organisation is not None:
        if actor is not None:
            require_administer(actor, organisation)
        running = ReadinessCheck.objects.filter(
            organisation=organisation, status__in=(RC.QUEUED, RC.RUNNING)
        ).first()
        if running is not None:
            return running
    elif wave is not None:
        if actor is not None:
            require_programme_office(actor)
    else:
        ids = sorted({int(pk) for pk in mailbox_ids or ()})
        if not ids:
            raise ValidationError("Choose at least one mailbox to check")
        if len(ids) > settings.READINESS_CHOSEN_MAX:
            raise ValidationError(f"Check at most {settings.READINESS_CHOSEN_MAX:,} mailboxes at a time")
        if actor is not None and not actor.is_programme_office:
            allowed = Mailbox.objects.filter(
                pk__in=ids, organisation__in=organisations_administered_by(actor)
            ).count()
            if allowed != len(ids):
                raise PermissionDenied("You can only check mailboxes of organisations you administer")
    check = ReadinessCheck.objects.create(
        organisation=organisation, wave=wave, mailbox_ids=ids, requested_by=actor, status=RC.QUEUED
    )
    event_record(
        action="readiness.check_started",
        actor=actor,
        organisation=organisation,
        wave=wave,
        subject=organisation.ods_code
        if organisation
        else (wave.name if wave else (f"{len(ids)} mailboxes" if ids else "every unchecked mailbox")),
        message="Readiness check started",
        data={"check": check.pk},
    )
    if queue:  # queue=False: the caller runs it (readiness_check_dispatch(inline=True), commands)
        from migrations_app.tasks import readiness_check_dispatch

        transaction.on_commit(lambda: readiness_check_dispatch.delay(check.pk))
    return check


def _scope(check: ReadinessCheck):
    qs = Mailbox.objects.filter(state__in=CHECKABLE)
    if check.organisation_id:
        return qs.filter(organisation_id=check.organisation_id)  # the (organisation, state, id) index
    if check.wave_id:
        from migrations_app.selectors.waves import wave_members

        return wave_members(check.wave).filter(state__in=CHECKABLE)
    if check.mailbox_ids is None:  # every mailbox never checked: the partial index mailbox_check_due_idx
        return qs.filter(checked_at__isnull=True)
    return qs.filter(pk__in=check.mailbox_ids)


def _pages(qs) -> Iterator[list[int]]:
    """The ids in id order, a page at a time (keyset): never one long result set in memory."""
    last = 0
    while True:
        page = list(qs.filter(pk__gt=last).order_by("id").values_list("id", flat=True)[:_PAGE])
        if not page:
            return
        yield page
        last = page[-1]


def readiness_check_dispatch(
    *, check_id: int, inline: bool = False, engine: Engine | None = None
) -> ReadinessCheck | None:
    """Queued -> running: count the mailboxes and queue their batches. Idempotent: a check already running
    or finished is left alone (a redelivered task does nothing). inline=True runs every batch here, in this
    process (commands and the demo seed, with no worker needed); transient trouble is still retried by the
    workers."""
    now = timezone.now()
    if not ReadinessCheck.objects.filter(pk=check_id, status=RC.QUEUED).update(
        status=RC.RUNNING, started_at=now
    ):
        return ReadinessCheck.objects.filter(pk=check_id).first()
    check = ReadinessCheck.objects.select_related("wave").get(pk=check_id)
    size = settings.READINESS_BATCH_MAILBOXES
    batches: list[list[int]] = []
    total = 0
    for page in _pages(_scope(check)):
        total += len(page)
        batches.extend(page[i : i + size] for i in range(0, len(page), size))
    ReadinessCheck.objects.filter(pk=check_id).update(total=total)
    if not total:
        _finish_if_done(check_id)
    else:
        from migrations_app.tasks import readiness_batch

        for ids in batches[1:]:
            if inline:
                readiness_batch_run(check_id=check_id, mailbox_ids=ids, engine=engine)
            else:
                readiness_batch.delay(check_id, ids, 0)
        # The first batch here, not through the broker: most organisations (a GP practice, a pharmacy) are
        # one batch, so their whole check is this one task. A full endpoint queues it like the others.
        try:
            readiness_batch_run(check_id=check_id, mailbox_ids=batches[0], engine=engine)
        except NoSlot:
            readiness_batch.apply_async((check_id, batches[0], 0), countdown=5)
    check.refresh_from_db()
    return check


# --- the engine and its caps --------------------------------------------------------------------------------


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


@dataclass
class _Sides:
    source: Endpoint | None
    target: Endpoint | None

    @classmethod
    def load(cls) -> _Sides:
        programme = (
            ProgrammeSettings.objects.select_related("readiness_source_endpoint", "readiness_target_endpoint")
            .filter(pk=1)
            .first()
        ) or ProgrammeSettings.load()
        return cls(programme.readiness_source_endpoint, programme.readiness_target_endpoint)

    @property
    def endpoints(self) -> list[Endpoint]:
        return sorted(
            {e.pk: e for e in (self.source, self.target) if e is not None}.values(), key=lambda e: e.pk
        )

    def engine(self) -> Engine:
        """As for a wave (execution.specs.engine_kind)."""
        kind = engine_kind(self.source, self.target)
        return get_engine(kind, **settings.MIGRATION_ENGINE_OPTIONS.get(kind, {}))


def _free_slots(endpoint: Endpoint) -> int:
    copying = Mailbox.objects.filter(
        Q(wave__source_endpoint=endpoint) | Q(wave__target_endpoint=endpoint), state__in=_COPYING
    ).count()
    return endpoint.max_concurrency - copying


@contextmanager
def _slots(endpoints: list[Endpoint]):
    """Hold one slot of each endpoint: keys slot 0..n-1 in the cache, taken with add() (atomic in Redis) and
    expiring by themselves if the worker dies holding them."""
    held: list[str] = []
    try:
        for endpoint in endpoints:
            for n in range(max(_free_slots(endpoint), 0)):
                key = f"portal:readiness-slot:{endpoint.pk}:{n}"
                if cache.add(key, 1, timeout=settings.READINESS_SLOT_SECONDS):
                    held.append(key)
                    break
            else:
                raise NoSlot(endpoint.name)
        yield
    finally:
        for key in held:
            cache.delete(key)


# --- one batch ----------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    ready: list[int]
    blocked: dict[int, tuple[str, str]]  # id -> (code, engine's words)
    retry: list[int]
    reports: dict[int, dict] = field(
        default_factory=dict
    )  # id -> what the engine found (counts by class, ...)


def _preflight(rows: list[tuple], sides: _Sides, engine: Engine) -> _Outcome:
    source, target = _endpoint_spec(sides.source), _endpoint_spec(sides.target)
    outcome = _Outcome([], {}, [], {})
    for pk, email, size, items, source_identity, target_upn in rows:
        spec = MailboxSpec(
            email=email,
            source=source,
            target=target,
            source_user=source_identity or email,
            target_user=target_upn or email,
            size_bytes=size,
            item_count=items,
            seed=pk,
        )
        try:
            result = engine.preflight(spec)
        except RetryableError:
            outcome.retry.append(pk)
            continue
        except EngineError as exc:
            outcome.blocked[pk] = (exc.code, exc.message or str(exc))
            continue
        except Exception:  # a bug or an unexpected answer: not the mailbox's fault, so not blocked
            logger.exception("readiness: pre-flight of mailbox %s raised", pk)
            outcome.retry.append(pk)
            continue
        if result.details is not None:
            outcome.reports[pk] = result.details
        if result.ok:
            outcome.ready.append(pk)
        else:
            outcome.blocked[pk] = (result.code or "PROTOCOL", result.message)
    return outcome


def retry_delay(attempt: int) -> float:
    base = settings.READINESS_RETRY_BASE_SECONDS * 2**attempt
    return min(base, 3600) * random.uniform(0.8, 1.2)


def readiness_batch_run(
    *, check_id: int, mailbox_ids: list[int], attempt: int = 0, engine: Engine | None = None
) -> dict[str, int]:
    """Pre-flight one batch and write it. Returns the counts written. Raises NoSlot when an endpoint is full
    (the task queues it again); nothing is written then."""
    if not ReadinessCheck.objects.filter(pk=check_id, status=RC.RUNNING).exists():
        return {}
    rows = list(
        Mailbox.objects.filter(pk__in=mailbox_ids, state__in=CHECKABLE)
        .order_by("id")
        .values_list("id", "email", "size_bytes", "item_count", "source_identity", "target_upn")
    )
    gone = len(set(mailbox_ids) - {r[0] for r in rows})
    sides = _Sides.load()
    with _slots(sides.endpoints):
        outcome = _preflight(rows, sides, engine or sides.engine())
    gave_up = 0
    if outcome.retry:
        if attempt + 1 < settings.READINESS_RETRY_LIMIT:
            from migrations_app.tasks import readiness_batch

            ids, delay = outcome.retry, retry_delay(attempt)
            transaction.on_commit(
                lambda: readiness_batch.apply_async((check_id, ids, attempt + 1), countdown=delay)
            )
        else:
            gave_up = len(outcome.retry)
    with transaction.atomic():
        written = _write(check_id, outcome, timezone.now())
        ReadinessCheck.objects.filter(pk=check_id).update(
            ready=F("ready") + written["ready"],
            blocked=F("blocked") + written["blocked"],
            unchecked=F("unchecked") + gone + gave_up + written["moved_on"],
        )
    _finish_if_done(check_id)
    return {**written, "retry": len(outcome.retry) - gave_up, "unchecked": gone + gave_up}


def _write(check_id: int, outcome: _Outcome, now: dt.datetime) -> dict[str, int]:
    """One conditional UPDATE for the batch: only rows still checkable are written (one retired or planned
    meanwhile is left alone and counted as moved on). Events for the rows whose state changed."""
    ids = sorted([*outcome.ready, *outcome.blocked])
    if not ids:
        return {"ready": 0, "blocked": 0, "moved_on": 0}
    locked = Mailbox.objects.filter(pk__in=ids, state__in=CHECKABLE)
    if connection.features.has_select_for_update:
        locked = locked.select_for_update(of=("self",))
    before = {
        pk: (org, email, state)
        for pk, org, email, state in locked.values_list("id", "organisation_id", "email", "state")
    }
    blocked = {pk: v for pk, v in outcome.blocked.items() if pk in before}
    ready_count = sum(1 for pk in outcome.ready if pk in before)
    # Rows are blocked for a few percent: one WHEN per blocked row, the rest take the default.
    Mailbox.objects.filter(pk__in=list(before), state__in=CHECKABLE).update(
        state=Case(*(When(pk=pk, then=Value(M.BLOCKED)) for pk in blocked), default=Value(M.READY))
        if blocked
        else Value(M.READY),
        blocked_code=Case(
            *(When(pk=pk, then=Value(code)) for pk, (code, _) in blocked.items()), default=Value("")
        )
        if blocked
        else Value(""),
        blocked_reason=Case(
            *(When(pk=pk, then=Value(reason[:2000])) for pk, (_, reason) in blocked.items()),
            default=Value(""),
        )
        if blocked
        else Value(""),
        checked_at=now,
        updated_at=now,
    )
    events = []
    for pk, (org_id, email, state) in before.items():
        to_state = M.BLOCKED if pk in blocked else M.READY
        if state == to_state and pk not in blocked:
            continue  # ready again: no transition to record
        events.append(
            dict(
                action="mailbox.blocked" if pk in blocked else "mailbox.ready",
                organisation_id=org_id,
                mailbox_id=pk,
                subject=email,
                from_state=state,
                to_state=to_state,
                message=blocked[pk][0] if pk in blocked else "pre-flight passed",
                data={"check": check_id, **({"reason": blocked[pk][1]} if pk in blocked else {})},
            )
        )
    event_record_many(events)
    reports = [Mailbox(pk=pk, preflight_report=r) for pk, r in outcome.reports.items() if pk in before]
    if reports:  # one UPDATE ... CASE for the batch
        Mailbox.objects.bulk_update(reports, ["preflight_report"])
    newly_blocked = {before[pk][0] for pk in blocked if before[pk][2] == M.READY}
    if newly_blocked:  # ready mailboxes planned in a draft or proposed wave are no longer in it
        from migrations_app.services.wave_moves import waves_refresh_planned

        waves_refresh_planned(organisation_ids=newly_blocked)
    return {"ready": ready_count, "blocked": len(blocked), "moved_on": len(ids) - len(before)}


def _finish_if_done(check_id: int) -> None:
    finished = ReadinessCheck.objects.filter(
        pk=check_id, status=RC.RUNNING, total__lte=F("ready") + F("blocked") + F("unchecked")
    ).update(status=RC.SUCCEEDED, finished_at=timezone.now())
    if finished:
        check = ReadinessCheck.objects.get(pk=check_id)
        event_record(
            action="readiness.check_finished",
            organisation=check.organisation,
            subject=check.organisation.ods_code if check.organisation else f"check {check.pk}",
            message=f"{check.ready} ready, {check.blocked} blocked, {check.unchecked} not checked",
            data={
                "check": check.pk,
                "ready": check.ready,
                "blocked": check.blocked,
                "unchecked": check.unchecked,
            },
        )


def readiness_check_fail(*, check_id: int, failure: str) -> None:
    """A check whose dispatch broke: shown as failed, with what went wrong, so it can be run again."""
    ReadinessCheck.objects.filter(pk=check_id, status__in=(RC.QUEUED, RC.RUNNING)).update(
        status=RC.FAILED, failure=failure[:2000], finished_at=timezone.now()
    )


# --- the beat: checks that went stale -----------------------------------------------------------------------


def readiness_recheck_due(*, now: dt.datetime | None = None) -> ReadinessCheck | None:
    """Check again, by itself, the mailboxes whose last check is older than the programme's age, or whose
    inventory row changed since (the import clears checked_at then). Up to READINESS_RECHECK_MAX a run, read
    through the partial index mailbox_check_due_idx; none while the previous re-check is still going."""
    now = now or timezone.now()
    if ReadinessCheck.objects.filter(
        requested_by__isnull=True,
        organisation__isnull=True,
        wave__isnull=True,
        mailbox_ids__isnull=False,
        status__in=(RC.QUEUED, RC.RUNNING),
    ).exists():
        return None
    cutoff = now - dt.timedelta(hours=ProgrammeSettings.load().readiness_recheck_hours)
    due = Mailbox.objects.filter(state__in=CHECKABLE).filter(
        Q(checked_at__lt=cutoff) | Q(checked_at__isnull=True, state__in=(M.READY, M.BLOCKED))
    )
    ids = list(
        due.order_by("checked_at", "id").values_list("id", flat=True)[: settings.READINESS_RECHECK_MAX]
    )
    if not ids:
        return None
    return readiness_check_start(actor=None, mailbox_ids=ids)
