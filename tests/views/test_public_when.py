"""The public "when does my mailbox move?" page: no sign-in, minimal disclosure, the same answer shape for an
unknown address as for a known one, rate-limited per client IP."""

import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from migrations_app.models import Mailbox, Wave
from tests.factories import MailboxFactory
from tests.status_fixtures import wave_in_states


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings):
    settings.PUBLIC_LOOKUP_RATE = "5/m"
    cache.clear()
    yield
    cache.clear()


def ask(client, email, ip="192.0.2.1"):
    return client.post("/when-does-my-mailbox-move/", {"email": email}, REMOTE_ADDR=ip)


def answer_block(response) -> str:
    """The answer part of the page, with the address asked about taken out."""
    html = response.content.decode()
    block = html.split('id="answer"', 1)[1]
    return re.sub(r"[\w.+-]+(@|%40)[\w.-]+", "ADDRESS", block)  # also where a link carries it


def test_it_needs_no_sign_in_and_gives_the_window_and_state(client, org_a):
    wave = wave_in_states([org_a], {"scheduled": 1}, status=Wave.Status.APPROVED, hours_ago=-48)
    mailbox = Mailbox.objects.get(wave=wave)
    assert client.get("/when-does-my-mailbox-move/").status_code == 200
    response = ask(client, mailbox.email.upper())
    html = response.content.decode()
    assert response.status_code == 200 and "Scheduled" in html and "(UK time)" in html
    # nothing else: no organisation, no display name, no size, no wave name
    for secret in [org_a.ods_code, "Guy", mailbox.display_name, "GB", wave.name]:
        assert secret not in answer_block(response)


def test_moved_and_moving_are_told(client, org_a):
    wave_in_states([org_a], {"migrated": 1, "syncing": 1})
    moved, moving = Mailbox.objects.order_by("state")  # migrated < syncing
    assert "Moved" in answer_block(ask(client, moved.email))
    assert "Moving now" in answer_block(ask(client, moving.email))


def test_an_unknown_address_gets_the_same_answer_as_a_known_unscheduled_one(client, org_a):
    known = MailboxFactory(organisation=org_a, email="known@rj1.nhs.uk")
    draft = wave_in_states([org_a], {"scheduled": 1}, status=Wave.Status.DRAFT, name="Draft")
    in_draft = Mailbox.objects.get(wave=draft)
    answers = []
    query_counts = []
    for email in [known.email, "nobody@rj1.nhs.uk", in_draft.email]:
        with CaptureQueriesContext(connection) as queries:
            response = ask(client, email)
        assert response.status_code == 200
        answers.append(answer_block(response))
        query_counts.append(len(queries))
    assert answers[0] == answers[1] == answers[2]
    assert "Not scheduled yet" in answers[0]
    assert query_counts[0] == query_counts[1] == query_counts[2]  # the same work, so similar timing


def test_lookups_are_rate_limited_per_client_ip(client, org_a):
    for _ in range(5):
        assert ask(client, "someone@rj1.nhs.uk").status_code == 200
    response = ask(client, "someone@rj1.nhs.uk")
    assert response.status_code == 429 and "too many addresses" in response.content.decode()
    assert 'id="answer"' not in response.content.decode()
    assert ask(client, "someone@rj1.nhs.uk", ip="198.51.100.7").status_code == 200  # another client


def test_a_global_limit_holds_however_many_addresses_ask(client, org_a, settings):
    settings.PUBLIC_LOOKUP_GLOBAL_RATE = "8/m"
    answers = [ask(client, "someone@rj1.nhs.uk", ip=f"198.51.100.{n}").status_code for n in range(10)]
    assert answers == [200] * 8 + [429] * 2


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(client, org_a, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]

    def through_proxy(client_address, proxy="10.0.0.5"):
        return client.post(
            "/when-does-my-mailbox-move/",
            {"email": "someone@rj1.nhs.uk"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=client_address,
        ).status_code

    # behind the proxy each client has its own allowance (and a forged first hop does not help)
    assert [through_proxy(f"203.0.113.9, 198.51.100.{n}") for n in range(6)] == [200] * 6
    assert [through_proxy("198.51.100.200") for _ in range(6)] == [200] * 5 + [429]
    # a client that is not the proxy cannot choose its address by sending the header
    forged = [through_proxy(f"198.51.100.{n}", proxy="192.0.2.50") for n in range(6)]
    assert forged == [200] * 5 + [429]


def test_a_bad_address_is_a_clear_error(client):
    response = ask(client, "not an address")
    assert response.status_code == 400 and "Enter your work email address" in response.content.decode()
