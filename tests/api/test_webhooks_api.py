"""/api/v1/organisations/{ods_code}/webhooks: managed by those who administer the organisation, the secret
never returned, a read-only delivery log and a test ping sent by a worker."""

import json

import pytest
from django.utils import timezone

from migrations_app.models import Webhook, WebhookDelivery
from tests.services.test_webhooks import SECRET, receiver_verifies
from tests.webhook_receiver import allow_receiver, start_receiver

BASE = "/api/v1/organisations/RJ1/webhooks/"


@pytest.fixture
def receiver(settings):
    made, server = start_receiver([200])
    allow_receiver(settings, made.url)
    yield made
    server.shutdown()
    server.server_close()


def post(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


def subscription(url, **extra):
    return {"url": url, "secret": SECRET, "event_types": ["mailbox."], **extra}


def test_a_trust_admin_manages_their_organisations_webhooks(api, admin_a, org_a, receiver):
    client = api(admin_a)
    response = post(client, BASE, subscription(receiver.url, description="Our ITSM"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["organisation"] == "RJ1" and body["event_types"] == ["mailbox."] and "secret" not in body
    url = f"{BASE}{body['id']}/"
    assert client.get(BASE).json()["results"][0]["id"] == body["id"]
    changed = client.patch(url, {"active": False}, content_type="application/json")
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert client.delete(url).status_code == 204 and not Webhook.objects.exists()


def test_the_secret_is_never_returned(api, admin_a, org_a, receiver, django_capture_on_commit_callbacks):
    client = api(admin_a)
    created = post(client, BASE, subscription(receiver.url))
    url = f"{BASE}{created.json()['id']}/"
    with django_capture_on_commit_callbacks(execute=True):
        ping = post(client, f"{url}ping/")
    responses = [created, ping, client.get(BASE), client.get(url), client.get(f"{url}deliveries/")]
    responses.append(client.get("/api/v1/events/?after=0"))
    for response in responses:
        assert response.status_code in {200, 201, 202} and SECRET not in response.content.decode()
    rotated = client.patch(url, {"secret": "n" * 30}, content_type="application/json")
    assert rotated.status_code == 200 and "n" * 30 not in rotated.content.decode()
    assert Webhook.objects.get().secret == "n" * 30


def test_ping_is_sent_signed_and_logged(api, admin_a, org_a, receiver, django_capture_on_commit_callbacks):
    client = api(admin_a)
    webhook_id = post(client, BASE, subscription(receiver.url)).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, f"{BASE}{webhook_id}/ping/")
    assert response.status_code == 202 and response.json()["kind"] == "ping"
    (request,) = receiver.requests
    assert receiver_verifies(request.headers, request.body, SECRET)
    assert json.loads(request.body)["type"] == "ping"
    log = client.get(f"{BASE}{webhook_id}/deliveries/").json()["results"]
    assert [(d["kind"], d["status"], d["http_status"], d["attempts"]) for d in log] == [
        ("ping", "succeeded", 200, 1)
    ]


def test_the_delivery_log_is_newest_first_and_read_only(api, admin_a, org_a, receiver):
    client = api(admin_a)
    webhook = Webhook.objects.get(pk=post(client, BASE, subscription(receiver.url)).json()["id"])
    made = [
        WebhookDelivery.objects.create(
            webhook=webhook, message_id=f"m{i}", payload={}, kind="ping", next_attempt_at=timezone.now()
        ).pk
        for i in range(3)
    ]
    url = f"{BASE}{webhook.pk}/deliveries/"
    assert [d["id"] for d in client.get(url).json()["results"]] == made[::-1]
    assert post(client, url).status_code == 405


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.org/hook", "https"),
        ("ftp://example.org/hook", "https"),
        ("https://user:pw@example.org/hook", "credentials"),
        ("https://169.254.169.254/latest/meta-data/", "internal"),
        ("https://127.1/hook", "valid URL"),  # refused by the serializer first (the service refuses it too)
        ("https://[::ffff:10.0.0.1]/hook", "internal"),
        ("https://localhost/hook", "internal"),
        ("https://example.org:6379/hook", "port 443"),
    ],
)
def test_only_https_urls_to_public_addresses_are_accepted(api, admin_a, org_a, url, message):
    response = post(api(admin_a), BASE, subscription(url))
    assert response.status_code == 400 and message in response.content.decode()
    assert not Webhook.objects.exists()


def test_https_urls_are_accepted_and_a_short_secret_is_not(api, admin_a, org_a):
    client = api(admin_a)
    assert post(client, BASE, subscription("https://itsm.example.nhs.uk/hook")).status_code == 201
    short = post(client, BASE, {"url": "https://itsm.example.nhs.uk/hook", "secret": "short"})
    assert short.status_code == 400 and short.json()["errors"][0]["field"] == "secret"


def test_webhooks_are_scoped_to_those_who_administer_the_organisation(
    api, admin_a, admin_b, officer, viewer, org_a, org_b
):
    mine = post(api(admin_a), BASE, subscription("https://a.example.nhs.uk/hook")).json()["id"]
    theirs = post(
        api(admin_b), "/api/v1/organisations/RRV/webhooks/", subscription("https://b.example.nhs.uk/hook")
    ).json()["id"]
    client = api(admin_b)
    assert client.get(BASE).status_code == 404  # admin_b cannot even see RJ1
    assert client.get(f"{BASE}{mine}/").status_code == 404
    assert post(client, f"{BASE}{mine}/ping/").status_code == 404
    assert client.delete(f"{BASE}{mine}/").status_code == 404
    # nor reach their own webhook through someone else's organisation
    assert api(admin_a).get(f"{BASE}{theirs}/").status_code == 404
    assert api(viewer).get(BASE).status_code == 403  # sees the organisation, may not administer it
    assert [w["id"] for w in api(officer).get(BASE).json()["results"]] == [mine]
    assert Webhook.objects.count() == 2


def test_a_read_token_cannot_change_webhooks(api, admin_a, org_a):
    response = post(api(admin_a, scopes=("read",)), BASE, subscription("https://a.example.nhs.uk/hook"))
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
