"""The audit trail (append-only events) and the outbound webhooks that carry it."""

import pgtrigger
from django.db import models
from django.db.models import Q

from migrations_app.constraints import one_of, only_if
from migrations_app.expressions import CurrentTransactionId
from migrations_app.fields import EncryptedTextField
from migrations_app.models.accounts import User
from migrations_app.models.mailboxes import Mailbox
from migrations_app.models.organisations import Organisation
from migrations_app.models.waves import Wave

APPEND_ONLY_REFUSAL = (
    "RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME"
    " USING ERRCODE = 'insufficient_privilege';"
)


class Event(models.Model):
    """The audit trail: every state change and every human action. Append-only and never purged.

    References are kept as plain ids (no database foreign key), so an event outlives what it describes and
    never blocks a deletion; `subject` keeps a readable name (an address, an ODS code) for that case.
    On PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE on this table, whoever asks; the portal's own
    database role is moreover granted only SELECT and INSERT on it (README, "Database roles").
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=60)
    actor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    mailbox = models.ForeignKey(
        Mailbox, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    wave = models.ForeignKey(
        Wave, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    subject = models.CharField(max_length=254, blank=True)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    # The inserting transaction's id (PostgreSQL xid8; 0 on SQLite): the event feed's order and its
    # visibility horizon, so no consumer skips an event that commits late (selectors/feed.py).
    txid = models.BigIntegerField(db_default=CurrentTransactionId(), editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organisation", "-id"], name="event_org_idx"),
            # the feed (/api/v1/events?after=) and the webhook fan-out read in (txid, id) order
            models.Index(fields=["txid", "id"], name="event_feed_idx"),
            models.Index(fields=["organisation", "txid", "id"], name="event_org_feed_idx"),
            models.Index(fields=["mailbox", "-id"], name="event_mailbox_idx"),
            models.Index(fields=["wave", "-id"], name="event_wave_idx"),
            models.Index(fields=["actor", "-id"], name="event_actor_idx"),
            models.Index(fields=["action", "-id"], name="event_action_idx"),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="event_append_only",
                level=pgtrigger.Row,
                when=pgtrigger.Before,
                operation=pgtrigger.Update | pgtrigger.Delete,
                func=APPEND_ONLY_REFUSAL,
            ),
            # TRUNCATE fires no row trigger: a statement trigger refuses it
            pgtrigger.Trigger(
                name="event_no_truncate",
                level=pgtrigger.Statement,
                when=pgtrigger.Before,
                operation=pgtrigger.Truncate,
                func=APPEND_ONLY_REFUSAL,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.subject}"


class Webhook(models.Model):
    """An organisation's subscription to its events: each matching event is POSTed, signed with `secret`
    (HMAC-SHA256, services/webhooks.py), to `url` by the workers. (`last_event_txid`, `last_event_id`) is
    the fan-out cursor in the event feed's order: events up to it have been turned into deliveries."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = EncryptedTextField(help_text="Signing secret; encrypted at rest and never shown back")
    # Event actions to send ("mailbox.migrated") or prefixes ending in "." ("mailbox."); empty: every event.
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    last_event_id = models.BigIntegerField(default=0)
    last_event_txid = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["organisation", "id"], name="webhook_org_idx")]

    def __str__(self) -> str:
        return f"{self.organisation_id}: {self.url}"

    def wants(self, action: str) -> bool:
        if not self.event_types:
            return True
        return any(action == t or (t.endswith(".") and action.startswith(t)) for t in self.event_types)


class WebhookDelivery(models.Model):
    """One message to one webhook (an event, or a test ping) and how its attempts went. Retries keep the
    same body and the same `Portal-Event-Id`, so a receiver can drop duplicates."""

    class Kind(models.TextChoices):
        EVENT = "event", "Event"
        PING = "ping", "Test ping"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=5, choices=Kind.choices, default=Kind.EVENT)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    message_id = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # fan-out may look at an event twice; it becomes one delivery per webhook
            models.UniqueConstraint(
                fields=["webhook", "event"], name="webhookdelivery_once_per_event", condition=Q(kind="event")
            )
        ]
        indexes = [
            models.Index(fields=["webhook", "-id"], name="webhookdelivery_webhook_idx"),
            # the due queue: pending deliveries only
            models.Index(
                fields=["next_attempt_at"], name="webhookdelivery_due_idx", condition=Q(status="pending")
            ),
            # the hourly purge of delivered bodies: only delivered ones that still have a body
            models.Index(
                fields=["last_attempt_at"],
                name="webhookdelivery_purge_idx",
                condition=Q(status="succeeded") & ~Q(payload={}),
            ),
        ]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints += [
        one_of("status", Status, name="webhookdelivery_status_valid"),
        only_if(
            Q(status=Status.PENDING), Q(next_attempt_at__isnull=False), name="webhookdelivery_pending_is_due"
        ),
    ]

    def __str__(self) -> str:
        return f"{self.message_id} to webhook {self.webhook_id}"
