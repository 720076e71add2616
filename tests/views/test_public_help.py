"""The public "I need help with my moved mailbox" form: no sign-in, the same answer for any address, rate-limited,
and a request from it moves its wave's support rate."""

import datetime as dt
import re

import pytest
from django.core.cache import cache

from migrations_app.models import Mailbox, SupportRequest, Wave
from migrations_app.selectors.support import wave_support
from tests.notify_fixtures import wave_in

URL = "/when-does-my-mailbox-move/help/"


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings):
    settings.PUBLIC_HELP_RATE = "3/m"
    cache.clear()
    yield
    cache.clear()


def send(client, email, category="phone", ip="192.0.2.1", description="My phone stopped"):
    return client.post(
        URL, {"email": email, "category": category, "description": description}, REMOTE_ADDR=ip
    )


def moved(org):
    wave, mailboxes = wave_in(org, starts_in=-dt.timedelta(days=1), mailboxes=4, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(wave=wave).update(state=Mailbox.State.MIGRATED)
    return wave, mailboxes


def test_the_lookup_page_offers_the_help_form(client):
    html = client.get("/when-does-my-mailbox-move/").content.decode()
    assert 'href="/when-does-my-mailbox-move/help/"' in html
    assert "I need help with my moved mailbox" in html


def test_a_request_from_the_public_page_moves_the_support_rate(client, org_a):
    wave, (mailbox, *_) = moved(org_a)
    assert wave_support(wave=wave)["rate"] == 0
    response = send(client, mailbox.email)
    assert response.status_code == 200 and "We have your request" in response.content.decode()
    request = SupportRequest.objects.get()
    assert (request.mailbox, request.category, request.description) == (mailbox, "phone", "My phone stopped")
    assert str(wave_support(wave=wave)["rate"]) == "25.00"


def test_an_unknown_address_gets_the_same_answer_and_nothing_is_stored(client, org_a):
    _, (mailbox, *_) = moved(org_a)

    def page(email):
        html = send(client, email).content.decode().replace(email, "X")
        return re.sub(r"[A-Za-z0-9]{64}", "TOKEN", html)  # the CSRF token differs per response

    assert page(mailbox.email) == page("nobody@example.nhs.uk")
    assert SupportRequest.objects.count() == 1


def test_it_asks_for_what_is_wrong(client, org_a):
    response = send(client, "a@example.nhs.uk", category="")
    assert response.status_code == 400
    assert "There is a problem" in response.content.decode()


def test_it_is_rate_limited_per_client(client, org_a):
    _, (mailbox, *_) = moved(org_a)
    for _ in range(3):
        assert send(client, mailbox.email).status_code == 200
    limited = send(client, mailbox.email)
    assert limited.status_code == 429 and "too many requests" in limited.content.decode()
    assert send(client, mailbox.email, ip="192.0.2.2").status_code == 200
    assert SupportRequest.objects.count() == 4
