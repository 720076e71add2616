"""A real Celery worker sends the webhook deliveries that the dispatcher queued on a real broker."""

import json
import time

import pytest
from celery.contrib.testing.worker import start_worker

from migrations_app.models import WebhookDelivery
from migrations_app.services.events import event_record
from migrations_app.services.webhooks import webhook_create, webhooks_dispatch
from tests.services.test_webhooks import SECRET, receiver_verifies
from tests.webhook_receiver import allow_receiver, start_receiver


@pytest.mark.django_db(transaction=True)
def test_a_worker_sends_the_queued_deliveries(real_broker, settings, admin_a, org_a):
    receiver, server = start_receiver([200])
    allow_receiver(settings, receiver.url)
    try:
        webhook_create(actor=admin_a, organisation=org_a, url=receiver.url, secret=SECRET, event_types=[])
        event_record(action="mailbox.migrated", organisation=org_a, subject="ann@rj1.nhs.uk")
        assert webhooks_dispatch() == 1
        assert receiver.requests == []  # queued on the broker, not sent by this process

        with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            deadline = time.monotonic() + 60
            while (
                time.monotonic() < deadline
                and not WebhookDelivery.objects.filter(status="succeeded").exists()
            ):
                time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.http_status) == ("succeeded", 1, 200)
    (request,) = receiver.requests
    assert receiver_verifies(request.headers, request.body, SECRET)
    assert json.loads(request.body)["data"]["subject"] == "ann@rj1.nhs.uk"
