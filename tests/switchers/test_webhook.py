"""The webhook switcher, for real over HTTP with a loopback receiver: the signed request a trust's automation
gets, and what its answers mean."""

import hashlib
import hmac
import json

import pytest

from migrations_app.engines import PermanentError, RetryableError
from migrations_app.switchers import SWITCH_REFUSED, Routing, SwitchTarget, get_switcher
from migrations_app.switchers.base import SERVER_BUSY
from tests.webhook_receiver import allow_receiver, start_receiver

SECRET = "a-long-random-signing-secret-1234"
TARGET = SwitchTarget(
    mailbox_id=7,
    email="jo.bloggs@trust.nhs.uk",
    identity="jbloggs",
    routing_address="jo.bloggs@nhs.mail.onmicrosoft.com",
    request_id="switch-7-1700000000",
)


@pytest.fixture
def receiver(settings):
    def start(statuses):
        receiver, server = start_receiver(statuses)
        allow_receiver(settings, receiver.url)
        servers.append(server)
        return receiver

    servers = []
    yield start
    for server in servers:
        server.shutdown()


def test_it_posts_a_signed_switch_request_and_waits_for_the_confirmation(receiver):
    got = receiver([202])
    switcher = get_switcher("webhook", address=got.url, secret=SECRET, timeout_seconds=900)

    assert switcher.switch([TARGET]) == {7: Routing.PENDING}

    (request,) = got.requests
    body = json.loads(request.body)
    assert body["type"] == "mailbox.switch" and body["direction"] == "switch"
    assert body["mailbox"] == {"id": 7, "email": "jo.bloggs@trust.nhs.uk", "identity": "jbloggs"}
    assert body["routing_address"] == "jo.bloggs@nhs.mail.onmicrosoft.com"
    assert body["confirm"] == "/api/v1/mailboxes/7/switch-confirm/"
    assert body["confirm_within_seconds"] == 900
    # the portal's webhook signature, checked as README tells a receiver to
    timestamp, signature = (part.split("=", 1)[1] for part in request.headers["Portal-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert request.headers["Portal-Event-Id"] == "switch-7-1700000000"


def test_it_sends_the_same_id_when_a_request_is_repeated_so_the_receiver_can_drop_it(receiver):
    got = receiver([202])
    switcher = get_switcher("webhook", address=got.url, secret=SECRET)
    switcher.switch([TARGET])
    switcher.switch([TARGET])

    assert len({r.headers["Portal-Event-Id"] for r in got.requests}) == 1


def test_it_asks_for_the_switch_back_on_unswitch(receiver):
    got = receiver([200])
    assert get_switcher("webhook", address=got.url, secret=SECRET).unswitch([TARGET]) == {7: Routing.PENDING}
    assert json.loads(got.requests[0].body)["direction"] == "unswitch"


def test_it_retries_when_the_trusts_system_is_down_and_gives_up_when_it_refuses(receiver):
    down = receiver([503])
    outcome = get_switcher("webhook", address=down.url, secret=SECRET).switch([TARGET])[7]
    assert isinstance(outcome, RetryableError) and outcome.code == SERVER_BUSY

    refusing = receiver([400])
    outcome = get_switcher("webhook", address=refusing.url, secret=SECRET).switch([TARGET])[7]
    assert isinstance(outcome, PermanentError) and outcome.code == SWITCH_REFUSED
    assert "answered 400" in outcome.message


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://127.0.0.2/switch",  # loopback (another address than the allowed receiver)
        "https://10.1.2.3/switch",  # private network
        "https://localhost/switch",  # resolves to loopback
    ],
)
def test_it_refuses_to_post_to_an_internal_address(url, receiver):
    receiver([202])  # a loopback receiver is allowed, on its own port only
    outcome = get_switcher("webhook", address=url, secret=SECRET).switch([TARGET])[7]

    assert isinstance(outcome, PermanentError) and outcome.code == SWITCH_REFUSED
    assert "internal network" in outcome.message
