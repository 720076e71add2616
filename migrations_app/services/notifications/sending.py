"""Hands due notifications to GOV.UK Notify within its limits: 3,000 requests a minute and a daily allowance
(250,000 emails by default), both configurable in NotificationSettings.

Claims are the nearest windows first, so when the day's allowance cannot cover everything it is tomorrow's
movers who wait, not tonight's. A claim is a conditional UPDATE pending -> sending (rows locked with SKIP
LOCKED on PostgreSQL), so two workers never send the same notification. Notify's answers:

- 201: sent, with Notify's id (its delivery receipt arrives later at the callback, see receipts.py);
- 429 RateLimitError: this and the rest of the claim go back to pending and wait NOTIFY_RATE_LIMIT_WAIT_SECONDS;
  nothing is lost and no attempt is counted;
- 429 TooManyRequestsError: the day's allowance is used up on Notify's side: back to pending until tomorrow;
- 400: Notify will never accept it (a malformed address): rejected, shown like a bad address;
- 403, 5xx, network: back to pending, retried after a wait (403 is our key or clock: logged loudly).

The `log` backend (the default without NOTIFY_API_KEY, as `make run` has) sends nothing and writes what it
would have sent on the mailbox's timeline.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from migrations_app.models import (
    Event,
    Moment,
    Notification,
    NotificationSettings,
    Organisation,
    OrganisationNotice,
    Wave,
)
from migrations_app.services.events import event_record_many
from migrations_app.services.notifications.backends import (  # noqa: F401 - the backends are used from here
    DAILY_LIMIT,
    RATE_LIMITED,
    REJECTED,
    RETRY,
    SENT,
    LogBackend,
    NotifyBackend,
    Outcome,
    Outgoing,
    backend,
)
from migrations_app.services.notifications.digest import digest_values
from migrations_app.services.notifications.templates import (
    personalisation,
    template_for,
    template_render,
    window_text,
)
from migrations_app.services.planning import LONDON

logger = logging.getLogger(__name__)
N = Notification.Status

# A claim not finished in this time (its worker died) goes back to the queue.
SENDING_LEASE = dt.timedelta(minutes=5)


@dataclass
class SendResult:
    sent: int = 0
    rate_limited: int = 0
    rejected: int = 0
    retried: int = 0
    stopped: str = ""
    counts: dict = field(default_factory=dict)


def start_of_day(now: dt.datetime) -> dt.datetime:
    """Notify's allowance is per day, UK time."""
    local = now.astimezone(LONDON)
    return dt.datetime.combine(local.date(), dt.time(0), tzinfo=LONDON)


def budget(*, settings_row: NotificationSettings, now: dt.datetime) -> int:
    """How many more may be sent now: under the per-minute rate and what is left of today's allowance.
    Two counts over the sent_at index (at most 3,000 and 250,000 entries)."""
    this_minute, today = _used(now)
    return max(0, min(settings_row.per_minute - this_minute, settings_row.daily_allowance - today))


def _used(now: dt.datetime) -> tuple[int, int]:
    sent = Notification.objects.filter(sent_at__isnull=False)
    this_minute = sent.filter(sent_at__gt=now - dt.timedelta(minutes=1)).count()
    today = sent.filter(sent_at__gte=start_of_day(now)).count()
    return this_minute, today


class Allowance:
    """The limits through one send pass: counted once at its start, then kept up to date with what this pass
    sends (a count of 250,000 index entries per batch was a fifth of the send time). A batch is reserved when
    it is claimed (a request each, against the minute and the day) and settled when its outcomes are in (what
    was not sent is given back to the day). The minute is recounted when a pass runs longer than one, with the
    batch still on the wire added; another worker sending at the same time can make both overshoot a little,
    which Notify answers with a 429 and the messages wait."""

    def __init__(self, settings_row: NotificationSettings, now: dt.datetime, in_flight: int = 0):
        self.settings_row, self.started = settings_row, now
        self.minute, self.day = _used(now)
        self.reserve(in_flight)
        self.day_start = start_of_day(now)

    def left(self, now: dt.datetime, *, in_flight: int = 0) -> int:
        if now - self.started > dt.timedelta(minutes=1) or start_of_day(now) != self.day_start:
            self.__init__(self.settings_row, now, in_flight)
        return max(
            0, min(self.settings_row.per_minute - self.minute, self.settings_row.daily_allowance - self.day)
        )

    def reserve(self, requests: int) -> None:
        self.minute += requests
        self.day += requests

    def settle(self, *, requests: int, sent: int) -> None:
        self.day -= requests - sent


def _claim(limit: int, now: dt.datetime, after: tuple | None) -> tuple[list[int], tuple | None]:
    """Claim the next due notifications, nearest windows first: pending -> sending in one statement. `after`
    is where the previous claim of this pass stopped (window, id): the scan starts there instead of walking
    the index entries of everything this pass already took (dead until vacuum: quadratic over a weekend).
    A digest waits while its organisation's owners in that wave are still to be sent, so that what it says
    they were told is what they were told (notification_owner_wait_idx holds only those rows)."""
    lease = now + SENDING_LEASE
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Notification._meta.db_table)
        keyset = "AND (window_starts_at, id) > (%s, %s)" if after else ""
        sql = f"""
            UPDATE {table} SET status = %s, next_attempt_at = %s
            WHERE id IN (
                SELECT id FROM {table} n
                WHERE status = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s) {keyset}
                AND (mailbox_id IS NOT NULL OR NOT EXISTS (
                    SELECT 1 FROM {table} o WHERE o.organisation_id = n.organisation_id
                    AND o.wave_id = n.wave_id AND o.mailbox_id IS NOT NULL AND o.status IN (%s, %s)))
                ORDER BY window_starts_at, id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING id, window_starts_at"""
        params = [N.SENDING, lease, N.PENDING, now, *(after or ()), N.PENDING, N.SENDING, limit]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            claimed = sorted(cursor.fetchall(), key=lambda row: (row[1], row[0]))
        return [row[0] for row in claimed], ((claimed[-1][1], claimed[-1][0]) if claimed else after)
    with transaction.atomic():
        owners_waiting = Notification.objects.filter(
            organisation_id=OuterRef("organisation_id"),
            wave_id=OuterRef("wave_id"),
            mailbox__isnull=False,
            status__in=(N.PENDING, N.SENDING),
        )
        due = Notification.objects.filter(status=N.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            Q(mailbox__isnull=False) | ~Exists(owners_waiting),
        )
        if after:
            due = due.filter(Q(window_starts_at__gt=after[0]) | Q(window_starts_at=after[0], id__gt=after[1]))
        rows = list(due.order_by("window_starts_at", "id").values_list("id", "window_starts_at")[:limit])
        ids = [row[0] for row in rows]
        if ids:
            Notification.objects.filter(id__in=ids, status=N.PENDING).update(
                status=N.SENDING, next_attempt_at=lease
            )
    return ids, ((rows[-1][1], rows[-1][0]) if rows else after)


@dataclass(slots=True)
class Claimed:
    """A claimed notification, as the send pass needs it (a plain row: a model instance per message was a
    fifth of the portal's time per message)."""

    pk: int
    mailbox_id: int | None
    organisation_id: int
    wave_id: int | None
    moment: str
    recipient: str
    attempts: int
    status: str = N.SENDING
    notify_id: str | None = None
    next_attempt_at: dt.datetime | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Owner:
    email: str
    display_name: str


def _render(ids: list[int]) -> tuple[list[Outgoing], list[Claimed]]:
    """The claimed notifications with their words: the rows with their mailboxes in one query, then one query
    per organisation table and wave for the whole claim."""
    rows, owners = [], {}
    for pk, mailbox_id, org, wave, moment, recipient, attempts, email, name in (
        Notification.objects.filter(id__in=ids)
        .order_by("window_starts_at", "id")
        .values_list(
            "id",
            "mailbox_id",
            "organisation_id",
            "wave_id",
            "moment",
            "recipient",
            "attempts",
            "mailbox__email",
            "mailbox__display_name",
        )
    ):
        rows.append(Claimed(pk, mailbox_id, org, wave, moment, recipient, attempts))
        if mailbox_id:
            owners[mailbox_id] = _Owner(email, name)
    digests = digest_values([r for r in rows if r.mailbox_id is None])
    org_ids = {r.organisation_id for r in rows}
    names = dict(Organisation.objects.filter(pk__in=org_ids).values_list("pk", "name"))
    notices = dict(
        OrganisationNotice.objects.filter(organisation_id__in=org_ids).values_list(
            "organisation_id", "paragraph"
        )
    )
    waves = Wave.objects.in_bulk({r.wave_id for r in rows if r.wave_id})
    windows = {pk: window_text(w.starts_at, w.ends_at) for pk, w in waves.items()}
    templates = {}
    outgoing = []
    for row in rows:
        if row.mailbox_id is None:  # a digest to one of the organisation's contacts
            template = templates.get(Moment.DIGEST) or templates.setdefault(
                Moment.DIGEST, template_for(Moment.DIGEST)
            )
            rendered = template_render(template=template, values=digests[row.pk])
            outgoing.append(Outgoing(row.pk, row.recipient, Moment.DIGEST, rendered))
            continue
        template = templates.get(row.moment) or templates.setdefault(row.moment, template_for(row.moment))
        values = personalisation(
            mailbox=owners[row.mailbox_id],
            organisation_name=names.get(row.organisation_id, ""),
            paragraph=notices.get(row.organisation_id, ""),
            wave=waves.get(row.wave_id),
            window=windows.get(row.wave_id),
        )
        outgoing.append(
            Outgoing(row.pk, row.recipient, row.moment, template_render(template=template, values=values))
        )
    return outgoing, rows


def _record(
    rows: list[Claimed], items: list[Outgoing], outcomes: list[Outcome], *, now: dt.datetime, log: bool
) -> SendResult:
    result = SendResult()
    wait = dt.timedelta(seconds=settings.NOTIFY_RATE_LIMIT_WAIT_SECONDS)
    tomorrow = start_of_day(now) + dt.timedelta(days=1, hours=1)
    sent: list[tuple[Claimed, str]] = []  # with what the timeline shows of it
    events = []
    for row, item, outcome in zip(rows, items, outcomes, strict=True):
        if outcome.kind == SENT:
            row.status, row.notify_id = N.SENT, outcome.notify_id
            result.sent += 1
            words = f"{item.rendered.subject}\n\n{item.rendered.body}" if log else item.rendered.subject
            sent.append((row, words))
        elif outcome.kind == REJECTED:
            row.status, row.error, row.attempts, row.next_attempt_at = (
                N.REJECTED,
                outcome.error,
                row.attempts + 1,
                None,
            )
            result.rejected += 1
            events.append(
                {
                    "action": "notification.rejected",
                    "mailbox_id": row.mailbox_id,
                    "organisation_id": row.organisation_id,
                    "wave_id": row.wave_id,
                    "subject": row.recipient,
                    "message": outcome.error,
                    "data": {"notification": row.pk, "moment": row.moment},
                }
            )
        else:
            # Back in the queue, nothing lost: a rate limit is not the message's fault, so no attempt counted.
            row.status, row.error = N.PENDING, outcome.error
            row.next_attempt_at = tomorrow if outcome.kind == DAILY_LIMIT else now + wait
            if outcome.kind == RETRY:
                row.attempts += 1
                result.retried += 1
            else:
                result.rate_limited += 1
    _save_sent(sent, now=now, action="notification.logged" if log else "notification.sent")
    _save_others([r for r in rows if r.status != N.SENT])
    event_record_many(events)
    return result


def _save_sent(sent: list[tuple[Claimed, str]], *, now: dt.datetime, action: str) -> None:
    """The sent ones, each with its own Notify id, and their events on the timelines. On PostgreSQL one
    statement for the whole claim: UPDATE ... FROM unnest() RETURNING feeding INSERT INTO event, so nothing
    per message crosses back to Python (Django's bulk_update built a CASE per field and row, 4 s for 500;
    the events' bulk_create was then a third of the portal's time per message)."""
    if not sent:
        return
    table = connection.ops.quote_name(Notification._meta.db_table)
    if connection.vendor != "postgresql":
        at = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET status = %s, notify_id = %s, sent_at = %s, attempts = attempts + 1, "
                "next_attempt_at = NULL, error = '' WHERE id = %s",
                [(N.SENT, r.notify_id, at, r.pk) for r, _ in sent],
            )
        event_record_many(
            {
                "action": action,
                "mailbox_id": r.mailbox_id,
                "organisation_id": r.organisation_id,
                "wave_id": r.wave_id,
                "subject": r.recipient,
                "message": words,
                "data": {"notification": r.pk, "moment": r.moment, "notify_id": r.notify_id},
            }
            for r, words in sent
        )
        return
    event = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH v AS (
                SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, notify_id, words)
            ), sent AS (
                UPDATE {table} AS n SET status = %s, notify_id = v.notify_id, sent_at = %s,
                    attempts = n.attempts + 1, next_attempt_at = NULL, error = ''
                FROM v WHERE n.id = v.id
                RETURNING n.id, n.mailbox_id, n.organisation_id, n.wave_id, n.recipient, n.moment, v.notify_id,
                    v.words
            )
            INSERT INTO {event} (created_at, action, organisation_id, mailbox_id, wave_id, subject,
                from_state, to_state, message, data)
            SELECT %s, %s, organisation_id, mailbox_id, wave_id, left(recipient, 254), '', '', words,
                jsonb_build_object('notification', id, 'moment', moment, 'notify_id', notify_id)
            FROM sent ORDER BY id""",
            [
                [r.pk for r, _ in sent],
                [r.notify_id for r, _ in sent],
                [words for _, words in sent],
                N.SENT,
                now,
                timezone.now(),
                action,
            ],
        )


def _save_others(rows: list[Claimed]) -> None:
    """The rest (back in the queue, rejected), grouped by what changes: one UPDATE each."""
    groups: dict[tuple, list[int]] = {}
    for r in rows:
        groups.setdefault((r.status, r.attempts, r.next_attempt_at, r.error), []).append(r.pk)
    for (status, attempts, next_attempt_at, error), ids in groups.items():
        Notification.objects.filter(pk__in=ids).update(
            status=status, attempts=attempts, next_attempt_at=next_attempt_at, error=error
        )


def _stop_reason(outcomes: Iterable[Outcome]) -> str:
    kinds = {o.kind for o in outcomes}
    for kind in (DAILY_LIMIT, RATE_LIMITED, RETRY):
        if kind in kinds:
            return kind
    return ""


def notifications_requeue_stuck(*, now: dt.datetime | None = None) -> int:
    """Claims whose worker died while sending go back to the queue (Notify dedupes nothing, but each message
    carries our id as its reference, so a rare double is traceable)."""
    now = now or timezone.now()
    return Notification.objects.filter(status=N.SENDING, next_attempt_at__lt=now).update(
        status=N.PENDING, next_attempt_at=now
    )


@dataclass
class _Batch:
    """A claimed batch on its way: its rows, their words, and how to get Notify's answers."""

    rows: list[Claimed]
    items: list[Outgoing]
    outcomes: object = None  # () -> list[Outcome], once submitted


def _unclaim(batch: _Batch) -> None:
    """A batch claimed but not sent (Notify pushed back on the one before it): back to the queue as it was."""
    Notification.objects.filter(pk__in=[r.pk for r in batch.rows], status=N.SENDING).update(
        status=N.PENDING, next_attempt_at=None
    )


def notifications_send_due(
    *, now: dt.datetime | None = None, sender=None, max_batches: int = 1000
) -> SendResult:
    """Send what is due, nearest windows first, until the queue is empty, a limit is reached or Notify pushes
    back. Beat runs this every few seconds; one run sends at most a minute's worth.

    Pipelined: while one batch is on the wire (the backend's threads), the next is claimed and rendered and the
    one before is recorded, so the database's work and Notify's answers overlap instead of taking turns. A
    batch's outcomes are always recorded before the pass ends; a batch claimed behind one that Notify pushed
    back on goes back to the queue untouched."""
    settings_row = NotificationSettings.load()
    sender = sender or backend()
    total = SendResult()
    allowance = Allowance(settings_row, now or timezone.now())
    log = sender.name == "log"
    after = None
    flying: _Batch | None = None  # submitted, outcomes not yet recorded
    for batch in range(max_batches + 1):  # the last round only records what is on the wire
        clock = now or timezone.now()
        in_flight = len(flying.items) if flying else 0
        allowed = allowance.left(clock, in_flight=in_flight) if batch < max_batches else 0
        following: _Batch | None = None
        if allowed > 0:
            ids, after = _claim(min(allowed, settings.NOTIFY_SEND_BATCH), clock, after)
            if ids:
                items, rows = _render(ids)
                allowance.reserve(len(items))
                following = _Batch(rows, items)
        elif batch < max_batches:
            total.stopped = "limit"
        if flying is None and following is None:
            break  # nothing on the wire, nothing more to claim
        stop = ""
        if flying is not None:
            outcomes = flying.outcomes()
            stop = _stop_reason(outcomes)
            if stop and following is not None:
                _unclaim(following)
                allowance.settle(requests=len(following.items), sent=0)
                following = None
        if following is not None:
            following.outcomes = sender.submit(following.items)  # on the wire while the last is recorded
        if flying is not None:
            try:
                with transaction.atomic():
                    result = _record(flying.rows, flying.items, outcomes, now=now or timezone.now(), log=log)
            except BaseException:
                if following is not None:  # already on the wire: what Notify says of it is kept if it can be
                    with transaction.atomic():
                        _record(
                            following.rows,
                            following.items,
                            following.outcomes(),
                            now=now or timezone.now(),
                            log=log,
                        )
                raise
            allowance.settle(requests=len(flying.items), sent=result.sent)
            total.sent += result.sent
            total.rate_limited += result.rate_limited
            total.rejected += result.rejected
            total.retried += result.retried
            if stop:
                total.stopped = stop
                break
        if following is None and flying is not None and total.stopped == "":
            # the queue looked empty while the last batch was on the wire: a digest skipped then (its owners
            # were still being sent) is due now; one more look from the start of the queue
            after = None
        flying = following
    return total
