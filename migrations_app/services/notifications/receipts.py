"""GOV.UK Notify's delivery receipts, stored per message and written on the mailbox's timeline.

Notify posts {"id", "reference", "to", "status", "created_at", "completed_at", "sent_at", "notification_type"}
to our callback with the bearer token we gave it. Statuses:

- delivered;
- permanent-failure: the address does not exist; shown on the mailbox and its organisation's page to fix;
- temporary-failure (inbox full, out of office) and technical-failure (Notify's side): sent again after a
  wait, up to NOTIFY_MAX_ATTEMPTS; then it stays failed, shown like a bad address.

A receipt changes the row only if it is still waiting for one (sent), so a repeated callback does nothing.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from migrations_app.models import Notification
from migrations_app.services.events import event_record_many

N = Notification.Status
RECEIPT_STATUSES = (N.DELIVERED, N.PERMANENT_FAILURE, N.TEMPORARY_FAILURE, N.TECHNICAL_FAILURE)
RETRIED = (N.TEMPORARY_FAILURE, N.TECHNICAL_FAILURE)


@transaction.atomic
def notification_receipt(*, payload: dict) -> Notification | None:
    """Store one receipt. Returns the notification, or None for one we do not know (or already settled)."""
    status = payload.get("status")
    notify_id = str(payload.get("id") or "")
    if status not in RECEIPT_STATUSES or not notify_id:
        raise ValidationError("A receipt needs Notify's id and a status of " + ", ".join(RECEIPT_STATUSES))
    completed = parse_datetime(payload.get("completed_at") or "") or timezone.now()
    row = Notification.objects.filter(notify_id=notify_id).first()
    if row is None:
        return None
    fields = {"status": status, "completed_at": completed}
    if status in RETRIED and row.attempts < settings.NOTIFY_MAX_ATTEMPTS:
        # Sent again after a wait: a fresh id comes with the next send.
        wait = dt.timedelta(seconds=settings.NOTIFY_RETRY_WAIT_SECONDS * row.attempts)
        fields = {
            "status": N.PENDING,
            "notify_id": None,
            "next_attempt_at": timezone.now() + wait,
            "error": status,
        }
    updated = Notification.objects.filter(pk=row.pk, status=N.SENT, notify_id=notify_id).update(**fields)
    if not updated:
        return None
    row.refresh_from_db()
    event_record_many(
        [
            {
                "action": f"notification.{status}",
                "mailbox_id": row.mailbox_id,
                "organisation_id": row.organisation_id,
                "wave_id": row.wave_id,
                "subject": row.recipient,
                "message": _MESSAGES[status] + (" It will be sent again." if row.status == N.PENDING else ""),
                "data": {"notification": row.pk, "moment": row.moment, "notify_id": notify_id},
            }
        ]
    )
    return row


_MESSAGES = {
    N.DELIVERED: "Delivered.",
    N.PERMANENT_FAILURE: "Not delivered: the address does not exist. Fix the owner's address.",
    N.TEMPORARY_FAILURE: "Not delivered yet: the inbox was full or unavailable.",
    N.TECHNICAL_FAILURE: "Not delivered: a technical failure at Notify.",
}
