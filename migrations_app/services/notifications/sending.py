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
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from migrations_app.models import (
    Mailbox,
    Moment,
    Notification,
    NotificationSettings,
    Organisation,
    OrganisationNotice,
    Wave,
)
from migrations_app.services.events import event_record_many
from migrations_app.services.notifications.digest import digest_values
from migrations_app.services.notifications.templates import (
    Rendered,
    personalisation,
    template_for,
    template_render,
)
from migrations_app.services.planning import LONDON

logger = logging.getLogger(__name__)
N = Notification.Status

SENT, RATE_LIMITED, DAILY_LIMIT, REJECTED, RETRY = "sent", "rate_limited", "daily_limit", "rejected", "retry"
# A claim not finished in this time (its worker died) goes back to the queue.
SENDING_LEASE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Outgoing:
    notification_id: int
    recipient: str
    moment: str
    rendered: Rendered


@dataclass(frozen=True)
class Outcome:
    kind: str
    notify_id: str = ""
    error: str = ""


@dataclass
class SendResult:
    sent: int = 0
    rate_limited: int = 0
    rejected: int = 0
    retried: int = 0
    stopped: str = ""
    counts: dict = field(default_factory=dict)


class LogBackend:
    """Sends nothing: the mailbox's timeline shows what would have gone (subject and body)."""

    name = "log"

    def send_many(self, items: list[Outgoing]) -> list[Outcome]:
        for item in items:
            logger.info(
                "notification %s to %s: %s", item.notification_id, item.recipient, item.rendered.subject
            )
        return [Outcome(SENT, notify_id=str(uuid.uuid4())) for _ in items]


class NotifyBackend:
    """GOV.UK Notify through its Python client, one client per thread (the client is not thread-safe)."""

    name = "notify"

    def __init__(self, *, api_key: str, base_url: str, template_ids: dict[str, str], threads: int):
        self.api_key, self.base_url, self.template_ids, self.threads = (
            api_key,
            base_url,
            template_ids,
            threads,
        )
        self._local = threading.local()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from notifications_python_client.notifications import NotificationsAPIClient

            client = NotificationsAPIClient(self.api_key, base_url=self.base_url, timeout=30)
            self._local.client = client
        return client

    def _template_id(self, moment: str) -> str:
        return self.template_ids.get(moment) or self.template_ids.get("default", "")

    def send_one(self, item: Outgoing) -> Outcome:
        from notifications_python_client.errors import APIError

        try:
            response = self._client().send_email_notification(
                email_address=item.recipient,
                template_id=self._template_id(item.moment),
                personalisation={"subject": item.rendered.subject, "body": item.rendered.body},
                reference=str(item.notification_id),
            )
        except APIError as exc:
            return _outcome_of_error(exc)
        except Exception as exc:  # network trouble, a timeout: try again later
            return Outcome(RETRY, error=f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(SENT, notify_id=str(response["id"]))

    def send_many(self, items: list[Outgoing]) -> list[Outcome]:
        if self.threads <= 1 or len(items) <= 1:
            return [self.send_one(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            return list(pool.map(self.send_one, items))


def _outcome_of_error(exc) -> Outcome:
    """Notify's error bodies: {"status_code": 429, "errors": [{"error": "RateLimitError", "message": ...}]}."""
    message = exc.message
    kinds = [e.get("error", "") for e in message] if isinstance(message, list) else []
    text = "; ".join(e.get("message", "") for e in message) if isinstance(message, list) else str(message)
    if exc.status_code == 429:
        return Outcome(DAILY_LIMIT if "TooManyRequestsError" in kinds else RATE_LIMITED, error=text[:300])
    if exc.status_code == 400:
        return Outcome(REJECTED, error=text[:300])
    if exc.status_code == 403:
        logger.error("GOV.UK Notify refused our key (403): %s", text)
    return Outcome(RETRY, error=f"{exc.status_code}: {text}"[:300])


def backend():
    """NOTIFY_BACKEND, or Notify when there is a key and the log otherwise."""
    name = settings.NOTIFY_BACKEND or ("notify" if settings.NOTIFY_API_KEY else "log")
    if name == "log":
        return LogBackend()
    return NotifyBackend(
        api_key=settings.NOTIFY_API_KEY,
        base_url=settings.NOTIFY_BASE_URL,
        template_ids=settings.NOTIFY_TEMPLATE_IDS,
        threads=settings.NOTIFY_SEND_THREADS,
    )


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
    sends (a count of 250,000 index entries per batch was a fifth of the send time). The minute is recounted
    when a pass runs longer than one; another worker sending at the same time can make both overshoot a
    little, which Notify answers with a 429 and the messages wait."""

    def __init__(self, settings_row: NotificationSettings, now: dt.datetime):
        self.settings_row, self.started = settings_row, now
        self.minute, self.day = _used(now)
        self.day_start = start_of_day(now)

    def left(self, now: dt.datetime) -> int:
        if now - self.started > dt.timedelta(minutes=1) or start_of_day(now) != self.day_start:
            self.__init__(self.settings_row, now)
        return max(
            0, min(self.settings_row.per_minute - self.minute, self.settings_row.daily_allowance - self.day)
        )

    def used(self, *, requests: int, sent: int) -> None:
        self.minute += requests
        self.day += sent


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


def _render(ids: list[int]) -> tuple[list[Outgoing], list[Notification]]:
    """The claimed notifications with their words: one query per table for the whole claim."""
    rows = list(
        Notification.objects.filter(id__in=ids)
        .only("id", "mailbox_id", "organisation_id", "wave_id", "moment", "recipient", "attempts", "status")
        .order_by("window_starts_at", "id")
    )
    mailboxes = Mailbox.objects.only("id", "email", "display_name").in_bulk(
        [r.mailbox_id for r in rows if r.mailbox_id]
    )
    digests = digest_values([r for r in rows if r.mailbox_id is None])
    org_ids = {r.organisation_id for r in rows}
    names = dict(Organisation.objects.filter(pk__in=org_ids).values_list("pk", "name"))
    notices = dict(
        OrganisationNotice.objects.filter(organisation_id__in=org_ids).values_list(
            "organisation_id", "paragraph"
        )
    )
    waves = Wave.objects.in_bulk({r.wave_id for r in rows if r.wave_id})
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
            mailbox=mailboxes[row.mailbox_id],
            organisation_name=names.get(row.organisation_id, ""),
            paragraph=notices.get(row.organisation_id, ""),
            wave=waves.get(row.wave_id),
        )
        outgoing.append(
            Outgoing(row.pk, row.recipient, row.moment, template_render(template=template, values=values))
        )
    return outgoing, rows


def _record(
    rows: list[Notification], items: list[Outgoing], outcomes: list[Outcome], *, now: dt.datetime, log: bool
) -> SendResult:
    result = SendResult()
    wait = dt.timedelta(seconds=settings.NOTIFY_RATE_LIMIT_WAIT_SECONDS)
    tomorrow = start_of_day(now) + dt.timedelta(days=1, hours=1)
    events = []
    for row, item, outcome in zip(rows, items, outcomes, strict=True):
        if outcome.kind == SENT:
            row.status, row.notify_id, row.sent_at, row.attempts = (
                N.SENT,
                outcome.notify_id,
                now,
                row.attempts + 1,
            )
            row.next_attempt_at, row.error = None, ""
            result.sent += 1
            events.append(
                {
                    "action": "notification.logged" if log else "notification.sent",
                    "mailbox_id": row.mailbox_id,
                    "organisation_id": row.organisation_id,
                    "wave_id": row.wave_id,
                    "subject": row.recipient,
                    "message": f"{item.rendered.subject}\n\n{item.rendered.body}"
                    if log
                    else item.rendered.subject,
                    "data": {"notification": row.pk, "moment": row.moment, "notify_id": outcome.notify_id},
                }
            )
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
    _save(rows, now=now)
    event_record_many(events)
    return result


def _save(rows: list[Notification], *, now: dt.datetime) -> None:
    """Write the outcomes: the sent ones (each with its own Notify id) in one UPDATE ... FROM unnest() on
    PostgreSQL (an executemany elsewhere); the rest grouped by what changes, one UPDATE each. (Django's
    bulk_update builds a CASE per field and row: 4 s for 500 rows, most of the send time.)"""
    sent = [r for r in rows if r.status == N.SENT]
    table = connection.ops.quote_name(Notification._meta.db_table)
    if sent and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS n SET status = %s, notify_id = v.notify_id, sent_at = %s, "
                "attempts = n.attempts + 1, next_attempt_at = NULL, error = '' "
                "FROM unnest(%s::bigint[], %s::text[]) AS v(id, notify_id) WHERE n.id = v.id",
                [N.SENT, now, [r.pk for r in sent], [r.notify_id for r in sent]],
            )
    elif sent:
        at = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET status = %s, notify_id = %s, sent_at = %s, attempts = attempts + 1, "
                "next_attempt_at = NULL, error = '' WHERE id = %s",
                [(N.SENT, r.notify_id, at, r.pk) for r in sent],
            )
    groups: dict[tuple, list[int]] = {}
    for r in rows:
        if r.status != N.SENT:
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


def notifications_send_due(
    *, now: dt.datetime | None = None, sender=None, max_batches: int = 1000
) -> SendResult:
    """Send what is due, nearest windows first, until the queue is empty, a limit is reached or Notify pushes
    back. Beat runs this every few seconds; one run sends at most a minute's worth."""
    settings_row = NotificationSettings.load()
    sender = sender or backend()
    total = SendResult()
    allowance = Allowance(settings_row, now or timezone.now())
    after = None
    for _ in range(max_batches):
        clock = now or timezone.now()
        allowed = allowance.left(clock)
        if allowed <= 0:
            total.stopped = "limit"
            break
        ids, after = _claim(min(allowed, settings.NOTIFY_SEND_BATCH), clock, after)
        if not ids:
            break
        items, rows = _render(ids)
        outcomes = sender.send_many(items)
        with transaction.atomic():
            result = _record(rows, items, outcomes, now=now or timezone.now(), log=sender.name == "log")
        allowance.used(requests=len(items), sent=result.sent)
        total.sent += result.sent
        total.rate_limited += result.rate_limited
        total.rejected += result.rejected
        total.retried += result.retried
        stop = _stop_reason(outcomes)
        if stop:
            total.stopped = stop
            break
    return total
