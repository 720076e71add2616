"""Outbound webhooks, against a real HTTP receiver on loopback: events fan out to the subscriptions that want
them, each POST is signed so the receiver can check it, a 500 is retried with back-off, and a receiver that
never recovers is given up on."""

import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
from django.db import connection
from django.utils import timezone

from migrations_app.models import Event, Webhook, WebhookDelivery
from migrations_app.services.events import event_record
from migrations_app.services.webhooks import (
    webhook_create,
    webhook_deliveries_claim,
    webhook_update,
    webhooks_dispatch,
    webhooks_fan_out,
)
from tests.webhook_receiver import allow_receiver, start_receiver

SECRET = "whsec_0123456789abcdefghijklmnop"


def receiver_verifies(headers: dict, body: bytes, secret: str, tolerance: int = 300) -> bool:
    """What README tells a receiver to do, written independently of the portal's code."""
    parts = dict(item.split("=", 1) for item in headers["Portal-Signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - timestamp) <= tolerance


@pytest.fixture
def hooks(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    servers = []

    def receiver(*statuses):
        made, server = start_receiver(list(statuses) or [200])
        allow_receiver(settings, made.url)
        servers.append(server)
        return made

    yield receiver
    for server in servers:
        server.shutdown()
        server.server_close()


def subscribe(actor, organisation, url, event_types=()):
    return webhook_create(
        actor=actor, organisation=organisation, url=url, secret=SECRET, event_types=list(event_types)
    )


def make_due():
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())


def test_events_are_delivered_signed_to_the_subscriptions_that_want_them(hooks, admin_a, org_a, org_b):
    everything, migrated_only = hooks(200), hooks(200)
    subscribe(admin_a, org_a, everything.url, event_types=["mailbox."])  # a prefix
    subscribe(admin_a, org_a, migrated_only.url, event_types=["mailbox.migrated"])
    event_record(action="mailbox.migrated", organisation=org_a, subject="ann@rj1.nhs.uk", to_state="migrated")
    event_record(action="mailbox.failed", organisation=org_a, subject="bob@rj1.nhs.uk")
    event_record(action="mailbox.migrated", organisation=org_b, subject="someone@rrv.nhs.uk")

    assert webhooks_dispatch() == 3
    assert [json.loads(r.body)["type"] for r in everything.requests] == ["mailbox.migrated", "mailbox.failed"]
    assert [json.loads(r.body)["data"]["subject"] for r in migrated_only.requests] == ["ann@rj1.nhs.uk"]
    for request in everything.requests + migrated_only.requests:
        assert receiver_verifies(request.headers, request.body, SECRET)
        assert not receiver_verifies(request.headers, request.body, SECRET + "x")
        assert not receiver_verifies(request.headers, request.body + b" ", SECRET)
        body = json.loads(request.body)
        assert request.headers["Portal-Event-Id"] == body["id"] and body["organisation"] == "RJ1"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    # nothing new: nothing sent again
    assert webhooks_dispatch() == 0 and len(everything.requests) == 2


def test_a_subscription_gets_events_from_its_creation_on(hooks, admin_a, org_a):
    event_record(action="before", organisation=org_a)
    receiver = hooks(200)
    subscribe(admin_a, org_a, receiver.url)
    event_record(action="after", organisation=org_a)
    webhooks_dispatch()
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["after"]


def test_a_500_is_retried_with_back_off_and_the_same_event_id(hooks, admin_a, org_a):
    receiver = hooks(500, 200)
    subscribe(admin_a, org_a, receiver.url)
    event_record(action="mailbox.migrated", organisation=org_a)
    before = timezone.now()
    webhooks_dispatch()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.http_status) == ("pending", 1, 500)
    # the status and its reason only: what the receiver said is not stored (nor shown to the trust)
    assert delivery.response_excerpt == "Internal Server Error" and delivery.duration_ms is not None
    # first retry: 30 s base with jitter in its upper half
    assert (
        before + dt.timedelta(seconds=14)
        < delivery.next_attempt_at
        < timezone.now() + dt.timedelta(seconds=31)
    )
    assert webhooks_dispatch() == 0  # not due yet
    make_due()
    webhooks_dispatch()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.http_status, delivery.error) == (
        "succeeded",
        2,
        200,
        "",
    )
    first, second = receiver.requests
    assert first.body == second.body and first.headers["Portal-Event-Id"] == second.headers["Portal-Event-Id"]
    assert second.headers["Portal-Delivery-Attempt"] == "2"


def test_a_receiver_that_never_recovers_is_given_up_on(hooks, admin_a, org_a, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    receiver = hooks(503)
    subscribe(admin_a, org_a, receiver.url)
    event_record(action="mailbox.migrated", organisation=org_a)
    for _ in range(5):
        webhooks_dispatch()
        make_due()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert (
        delivery.error == "The receiver answered HTTP 503 Service Unavailable" and len(receiver.requests) == 3
    )


def test_an_unreachable_receiver_is_logged_and_retried(hooks, admin_a, org_a, settings):
    receiver = hooks(200)
    settings.OUTBOUND_ALLOWED_PORTS = [*settings.OUTBOUND_ALLOWED_PORTS, "127.0.0.1:1"]
    webhook = subscribe(admin_a, org_a, receiver.url.replace(receiver.url.split(":")[2].split("/")[0], "1"))
    event_record(action="x", organisation=org_a)
    webhooks_dispatch()
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert (
        delivery.status == "pending"
        and delivery.http_status is None
        and delivery.error == "Could not connect"
    )


def test_fan_out_is_once_per_event_even_if_run_twice(hooks, admin_a, org_a):
    webhook = subscribe(admin_a, org_a, hooks(200).url)
    event = event_record(action="x", organisation=org_a)
    assert webhooks_fan_out() == 1
    Webhook.objects.filter(pk=webhook.pk).update(last_event_id=event.pk - 1)  # as if the cursor were behind
    webhooks_fan_out()
    assert WebhookDelivery.objects.count() == 1


def test_claimed_deliveries_are_not_queued_twice(hooks, admin_a, org_a, settings):
    subscribe(admin_a, org_a, hooks(200).url)
    event_record(action="x", organisation=org_a)
    webhooks_fan_out()
    assert len(webhook_deliveries_claim()) == 1
    assert webhook_deliveries_claim() == []


def test_a_switched_off_subscription_sends_nothing(hooks, admin_a, org_a):
    receiver = hooks(200)
    webhook = subscribe(admin_a, org_a, receiver.url)
    webhook_update(actor=admin_a, webhook=webhook, active=False)
    event_record(action="x", organisation=org_a)
    webhooks_dispatch()
    assert receiver.requests == [] and not WebhookDelivery.objects.exists()


def test_the_secret_is_encrypted_at_rest(hooks, admin_a, org_a):
    webhook = subscribe(admin_a, org_a, hooks(200).url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM migrations_app_webhook WHERE id = %s", [webhook.pk])
        stored = cursor.fetchone()[0]
    assert SECRET not in stored and Webhook.objects.get().secret == SECRET
    assert SECRET not in json.dumps(list(Event.objects.values("data", "message", "subject")), default=str)


def test_a_name_that_resolves_to_an_internal_address_is_not_sent_to(
    hooks, admin_a, org_a, settings, monkeypatch
):
    """Saved while its name pointed somewhere public; at send time it resolves to loopback (the receiver's own
    address): no connection is made and the log says why, without anything from the internal service."""
    import socket

    receiver = hooks(200)
    port = int(receiver.url.split(":")[2].split("/")[0])
    real = socket.getaddrinfo

    def rebound(host, *args, **kwargs):
        if host == "hooks.attacker.example" and not kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    settings.OUTBOUND_ALLOWED_PORTS = [f"hooks.attacker.example:{port}"]
    subscribe(admin_a, org_a, f"https://hooks.attacker.example:{port}/hooks/portal")
    event_record(action="mailbox.migrated", organisation=org_a)
    webhooks_dispatch()
    delivery = WebhookDelivery.objects.get()
    assert delivery.http_status is None and delivery.response_excerpt == ""
    assert delivery.error == "Not sent: That address is on an internal network"
    assert receiver.requests == []


def test_delivered_bodies_are_emptied_after_the_retention_and_nothing_else(db, org_a, settings):
    from migrations_app.services.webhooks import webhook_payloads_purge

    settings.WEBHOOK_PAYLOAD_RETENTION_DAYS = 30
    webhook = Webhook.objects.create(organisation=org_a, url="https://hooks.example.org/", secret="s" * 30)
    now = timezone.now()
    old, recent = now - dt.timedelta(days=31), now - dt.timedelta(days=29)

    def delivery(status, last_attempt_at, n):
        return WebhookDelivery.objects.create(
            webhook=webhook,
            kind="ping",
            message_id=f"m{n}",
            payload={"id": f"m{n}", "data": {"subject": "ann@rj1.nhs.uk"}},
            status=status,
            last_attempt_at=last_attempt_at,
            next_attempt_at=now if status == "pending" else None,
        )

    old_delivered = delivery("succeeded", old, 1)
    keep = [delivery("succeeded", recent, 2), delivery("failed", old, 3), delivery("pending", old, 4)]
    assert webhook_payloads_purge(now=now, batch=1) == 1
    old_delivered.refresh_from_db()
    assert old_delivered.payload == {} and old_delivered.status == "succeeded"  # the record of it stays
    assert all(WebhookDelivery.objects.get(pk=d.pk).payload for d in keep)
    assert webhook_payloads_purge(now=now) == 0
