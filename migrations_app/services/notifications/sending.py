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
from django.db.models import Q
from django.utils import timezone

from migrations_app.models import (
    Mailbox,
    Notification,
    NotificationSettings,
    Organisation,
    OrganisationNotice,
    Wave,
)
from migrations_app.services.events import event_record_many
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
    sent = Notification.objects.filter(sent_at__isnull=False)
    this_minute = sent.filter(sent_at__gt=now - dt.timedelta(minutes=1)).count()
    today = sent.filter(sent_at__gte=start_of_day(now)).count()
    return max(0, min(settings_row.per_minute - this_minute, settings_row.daily_allowance - today))


def _claim(limit: int, now: dt.datetime) -> list[int]:
    with transaction.atomic():
        due = Notification.objects.filter(status=N.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("window_starts_at", "id").values_list("id", flat=True)[:limit])
        if ids:
            Notification.objects.filter(id__in=ids, status=N.PENDING).update(
                status=N.SENDING, next_attempt_at=now + SENDING_LEASE
            )
    return ids


def _render(ids: list[int]) -> tuple[list[Outgoing], list[Notification]]:
    """The claimed notifications with their words: one query per table for the whole claim."""
    rows = list(Notification.objects.filter(id__in=ids).order_by("window_starts_at", "id"))
    mailboxes = Mailbox.objects.in_bulk([r.mailbox_id for r in rows])
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
    Notification.objects.bulk_update(
        rows, ["status", "notify_id", "sent_at", "attempts", "next_attempt_at", "error"], batch_size=500
    )
    event_record_many(events)
    return result


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
    for _ in range(max_batches):
        clock = now or timezone.now()
        allowed = budget(settings_row=settings_row, now=clock)
        if allowed <= 0:
            total.stopped = "limit"
            break
        ids = _claim(min(allowed, settings.NOTIFY_SEND_BATCH), clock)
        if not ids:
            break
        items, rows = _render(ids)
        outcomes = sender.send_many(items)
        with transaction.atomic():
            result = _record(rows, items, outcomes, now=now or timezone.now(), log=sender.name == "log")
        total.sent += result.sent
        total.rate_limited += result.rate_limited
        total.rejected += result.rejected
        total.retried += result.retried
        stop = _stop_reason(outcomes)
        if stop:
            total.stopped = stop
            break
    return total
