"""Outbound webhooks: an organisation's events POSTed, signed, to a URL of its choosing, by the workers.

The engine's hot path is untouched: services.event_record only appends an Event. A beat task
(webhooks_dispatch, every few seconds) turns the events after each subscription's cursor into deliveries,
set-based (one INSERT per subscription with new events), then claims the deliveries that are due and queues
one task per delivery. A failed attempt is retried with exponential back-off and jitter up to
WEBHOOK_MAX_ATTEMPTS, then the delivery is marked failed; every attempt is logged on the delivery.

Signing, Stripe style: `Portal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
subscription's secret, and `Portal-Event-Id` (the same on every retry) to drop duplicates. How a receiver
checks it is in README ("Webhooks") and docs/adr/008-api-design.md."""

import datetime
import hashlib
import hmac
import json
import random
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from migrations_app.models import Event, Organisation, User, Webhook, WebhookDelivery
from migrations_app.outbound import OutboundRefused, outbound_check_url, outbound_request
from migrations_app.selectors.feed import events_after, events_visible_below_horizon
from migrations_app.selectors.scoping import require_administer
from migrations_app.services.events import event_record

SIGNATURE_HEADER = "Portal-Signature"
EVENT_ID_HEADER = "Portal-Event-Id"
USER_AGENT = "migration-portal-webhooks/1"
SECRET_MIN_LENGTH = 24


# --- signing -------------------------------------------------------------------------------------------------


def webhook_body(payload: dict) -> bytes:
    """The exact bytes sent (and signed): compact, keys sorted, so every retry sends the same body."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_signature(*, secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --- subscriptions ---------------------------------------------------------------------------------------------


def _check_url(url: str) -> str:
    """The URL's form (https, port, no credentials, no internal address literal); where its name resolves is
    checked again at every send (migrations_app/outbound.py)."""
    try:
        return outbound_check_url(url)
    except OutboundRefused as exc:
        raise ValidationError({"url": str(exc)}) from exc


def _check_event_types(event_types: list[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in event_types if t.strip()})
    bad = [t for t in cleaned if len(t) > 60 or not all(c.isalnum() or c in "._-" for c in t)]
    if bad:
        raise ValidationError({"event_types": f"Not an event type: {', '.join(bad)}"})
    return cleaned


def _check_secret(secret: str) -> str:
    if len(secret) < SECRET_MIN_LENGTH:
        raise ValidationError({"secret": f"Use a random secret of at least {SECRET_MIN_LENGTH} characters"})
    return secret


@transaction.atomic
def webhook_create(
    *,
    actor: User,
    organisation: Organisation,
    url: str,
    secret: str,
    event_types: list[str],
    active: bool = True,
    description: str = "",
) -> Webhook:
    """A subscription to the organisation's events from now on."""
    require_administer(actor, organisation)
    webhook = Webhook.objects.create(
        organisation=organisation,
        url=_check_url(url),
        secret=_check_secret(secret),
        event_types=_check_event_types(event_types),
        active=active,
        description=description[:200],
        created_by=actor,
    )
    created = event_record(
        action="webhook.created",
        actor=actor,
        organisation=organisation,
        subject=_subject(webhook),
        data={"webhook": webhook.pk, "event_types": webhook.event_types},
    )
    # what happened before (its own creation included) is history, readable at /events
    webhook.last_event_txid, webhook.last_event_id = created.txid, created.pk
    webhook.save(update_fields=["last_event_txid", "last_event_id"])
    return webhook


@transaction.atomic
def webhook_update(*, actor: User, webhook: Webhook, **changes) -> Webhook:
    """Change url, secret, event_types, active or description. A subscription switched back on starts from
    now: it is not sent what happened while it was off."""
    require_administer(actor, webhook.organisation)
    if "url" in changes:
        webhook.url = _check_url(changes["url"])
    if changes.get("secret"):
        webhook.secret = _check_secret(changes["secret"])
    if "event_types" in changes:
        webhook.event_types = _check_event_types(changes["event_types"])
    if "description" in changes:
        webhook.description = changes["description"][:200]
    if "active" in changes:
        if changes["active"] and not webhook.active:
            webhook.last_event_txid, webhook.last_event_id = _feed_end()
        webhook.active = changes["active"]
    webhook.save()
    event_record(
        action="webhook.changed",
        actor=actor,
        organisation=webhook.organisation,
        subject=webhook.url,
        data={"webhook": webhook.pk, "fields": sorted(changes)},  # names only: never the secret
    )
    return webhook


def _feed_end() -> tuple[int, int]:
    """The feed position of "now": after the newest event, in the feed's order."""
    last = Event.objects.order_by("-txid", "-id").values_list("txid", "id").first()
    return last or (0, 0)


def _subject(webhook: Webhook) -> str:
    """The audit trail names a webhook by its host: its path may carry the receiver's token, and the trail is
    read by viewers and by every admin of the organisation, while the URL itself is shown only to its admins."""
    return f"webhook {webhook.pk} to {urlsplit(webhook.url).hostname}"


@transaction.atomic
def webhook_delete(*, actor: User, webhook: Webhook) -> None:
    require_administer(actor, webhook.organisation)
    event_record(
        action="webhook.deleted",
        actor=actor,
        organisation=webhook.organisation,
        subject=_subject(webhook),
        data={"webhook": webhook.pk},
    )
    webhook.delete()


@transaction.atomic
def webhook_ping(*, actor: User, webhook: Webhook) -> WebhookDelivery:
    """A test message, sent by a worker straight away (and retried like any other)."""
    require_administer(actor, webhook.organisation)
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        webhook=webhook,
        kind=WebhookDelivery.Kind.PING,
        message_id="",
        payload={},
        next_attempt_at=now,
    )
    delivery.message_id = f"ping_{delivery.pk}"
    delivery.payload = {
        "id": delivery.message_id,
        "type": "ping",
        "created_at": now.isoformat(),
        "organisation": webhook.organisation.ods_code,
        "data": {"webhook": webhook.pk, "requested_by": actor.get_username()},
    }
    delivery.save(update_fields=["message_id", "payload"])
    from migrations_app.tasks import webhook_deliver

    transaction.on_commit(lambda: webhook_deliver.delay(delivery.pk))
    return delivery


# --- fan-out and delivery --------------------------------------------------------------------------------------


def event_payload(event: Event, ods_code: str) -> dict:
    return {
        "id": f"evt_{event.pk}",
        "type": event.action,
        "created_at": event.created_at.isoformat(),
        "organisation": ods_code,
        "data": {
            "event": event.pk,
            "actor": event.actor.get_username() if event.actor else None,
            "mailbox": event.mailbox_id,
            "wave": event.wave_id,
            "subject": event.subject,
            "from_state": event.from_state,
            "to_state": event.to_state,
            "message": event.message,
            "data": event.data,
        },
    }


def webhooks_fan_out(*, batch: int = 1000) -> int:
    """Deliveries for the events after each active subscription's cursor; returns how many were made.

    The cursor is a position in the event feed's order, (txid, id), and only events below the visibility
    horizon are read (selectors/feed.py), so an event whose transaction commits after a later one is still
    delivered, exactly once: the (webhook, event) unique constraint makes a second look harmless too.
    One query finds the subscriptions with new events (event_org_feed_idx); then per such subscription one
    read of at most `batch` events and one INSERT."""
    # (txid, id) > cursor as two index ranges: a later transaction's events, or the cursor's own after it (a
    # row comparison against outer columns is not expressible here; one range minus the cursor's transaction
    # would read every event that transaction wrote)
    mine = Event.objects.filter(organisation_id=OuterRef("organisation_id"))
    later = events_visible_below_horizon(mine.filter(txid__gt=OuterRef("last_event_txid")))
    same = events_visible_below_horizon(
        mine.filter(txid=OuterRef("last_event_txid"), id__gt=OuterRef("last_event_id"))
    )
    pending = Webhook.objects.filter(Exists(later) | Exists(same), active=True).values_list("pk", flat=True)
    made = 0
    for webhook_id in list(pending):
        with transaction.atomic():
            # a second beat (or a slow previous run) skips the subscription rather than doubling it
            webhook = (
                Webhook.objects.select_for_update(skip_locked=True)
                .select_related("organisation")
                .filter(pk=webhook_id, active=True)
                .first()
            )
            if webhook is None:
                continue
            events = list(
                events_after(
                    Event.objects.filter(organisation_id=webhook.organisation_id),
                    txid=webhook.last_event_txid,
                    event_id=webhook.last_event_id,
                ).select_related("actor")[:batch]
            )
            if not events:
                continue
            deliveries = [
                WebhookDelivery(
                    webhook=webhook,
                    event=event,
                    message_id=f"evt_{event.pk}",
                    payload=event_payload(event, webhook.organisation.ods_code),
                    next_attempt_at=event.created_at,
                )
                for event in events
                if webhook.wants(event.action)
            ]
            WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
            Webhook.objects.filter(pk=webhook.pk).update(
                last_event_txid=events[-1].txid, last_event_id=events[-1].pk
            )
            made += len(deliveries)
    return made


def webhook_deliveries_claim(*, limit: int = 500) -> list[int]:
    """The ids of due deliveries, claimed for WEBHOOK_CLAIM_SECONDS (one UPDATE) so the next beat does not
    queue them again while their tasks wait in the broker; a lost task is simply due again after that."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(
            next_attempt_at=now + datetime.timedelta(seconds=settings.WEBHOOK_CLAIM_SECONDS)
        )
    return ids


def webhook_retry_delay(attempt: int) -> float:
    """base * 2^(attempt-1), capped, then a random point in its upper half (jitter), in seconds."""
    delay = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def webhook_deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """One attempt at one delivery; records the outcome and when to try again. A delivery that is no longer
    pending (done, failed, or attempted meanwhile by another worker) is left alone."""
    delivery = (
        WebhookDelivery.objects.select_related("webhook")
        .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
        .first()
    )
    if delivery is None:
        return None
    webhook = delivery.webhook
    body = webhook_body(delivery.payload)
    attempt = delivery.attempts + 1
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: webhook_signature(secret=webhook.secret, body=body, timestamp=int(time.time())),
        EVENT_ID_HEADER: delivery.message_id,
        "Portal-Delivery-Attempt": str(attempt),
    }
    started = time.perf_counter()
    http_status, excerpt, error = None, "", ""
    if not webhook.active and delivery.kind == WebhookDelivery.Kind.EVENT:
        error = "The webhook was switched off"
    else:
        # the status and a short reason only: what a receiver (or an internal service a URL pointed at)
        # answers never comes back to the person who typed the URL
        try:
            result = outbound_request(
                "POST", webhook.url, content=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
            )
        except OutboundRefused as exc:
            error = f"Not sent: {exc}"
        else:
            http_status, excerpt = result.status, result.reason
            if http_status is None:
                error = result.reason
    duration_ms = int((time.perf_counter() - started) * 1000)
    now = timezone.now()
    delivered = http_status is not None and 200 <= http_status < 300
    if delivered:
        status, next_attempt_at = WebhookDelivery.Status.SUCCEEDED, None
    elif attempt >= settings.WEBHOOK_MAX_ATTEMPTS or not webhook.active:
        status, next_attempt_at = WebhookDelivery.Status.FAILED, None
    else:
        status = WebhookDelivery.Status.PENDING
        next_attempt_at = now + datetime.timedelta(seconds=webhook_retry_delay(attempt))
    if not error and not delivered:
        error = f"The receiver answered HTTP {http_status} {excerpt}".strip()
    WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts
    ).update(
        status=status,
        attempts=attempt,
        http_status=http_status,
        response_excerpt=excerpt,
        error=error if not delivered else "",
        duration_ms=duration_ms,
        next_attempt_at=next_attempt_at,
        last_attempt_at=now,
    )
    delivery.refresh_from_db()
    return delivery


def webhook_payloads_purge(*, now: datetime.datetime | None = None, batch: int = 5000) -> int:
    """Beat, hourly: empty the bodies of deliveries delivered more than WEBHOOK_PAYLOAD_RETENTION_DAYS ago, in
    batches of `batch` rows (one short UPDATE each, on the webhookdelivery_purge_idx partial index), so a
    year of events does not keep a year of copies. The delivery row (who, when, what answer) stays."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=settings.WEBHOOK_PAYLOAD_RETENTION_DAYS)
    due = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.SUCCEEDED, last_attempt_at__lt=cutoff
    ).exclude(payload={})
    purged = 0
    while True:
        ids = list(due.values_list("pk", flat=True)[:batch])
        if not ids:
            return purged
        purged += WebhookDelivery.objects.filter(pk__in=ids).update(payload={})


def webhooks_dispatch() -> int:
    """Beat: fan out new events, then queue every due delivery. Returns how many were queued."""
    from migrations_app.tasks import webhook_deliver as deliver_task

    webhooks_fan_out()
    ids = webhook_deliveries_claim()
    for delivery_id in ids:
        deliver_task.delay(delivery_id)
    return len(ids)
