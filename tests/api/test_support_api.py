"""/api/v1/ support: a trust's tickets in bulk (idempotent by reference) and the support rates."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.models import Mailbox, SupportRequest, Wave
from tests.notify_fixtures import wave_in


@pytest.fixture
def moved(db, org_a):
    wave, mailboxes = wave_in(
        org_a, starts_in=-dt.timedelta(days=1), mailboxes=4, status=Wave.Status.COMPLETED
    )
    Mailbox.objects.filter(wave=wave).update(state=Mailbox.State.MIGRATED)
    return wave, mailboxes


def tickets(mailboxes):
    now = timezone.now().isoformat()
    return [
        {"reference": f"INC{i}", "address": m.email, "opened_at": now, "category": "sign_in"}
        for i, m in enumerate(mailboxes)
    ]


def test_a_ticket_import_moves_the_rates(api, admin_a, moved):
    wave, mailboxes = moved
    client = api(admin_a)
    response = client.post(
        "/api/v1/organisations/RJ1/support-tickets/", tickets(mailboxes[:1]), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json() == {"received": 1, "created": 1, "already_known": 0}
    again = client.post(
        "/api/v1/organisations/RJ1/support-tickets/", tickets(mailboxes[:1]), content_type="application/json"
    )
    assert again.json()["already_known"] == 1 and SupportRequest.objects.count() == 1

    rates = client.get(f"/api/v1/waves/{wave.pk}/support/").json()
    assert (rates["moved"], rates["supported"], rates["rate"]) == (4, 1, "25.00")
    assert rates["categories"] == [{"category": "sign_in", "label": "I cannot sign in", "mailboxes": 1}]
    assert client.get("/api/v1/organisations/RJ1/support/").json()["rate"] == "25.00"
    assert client.get("/api/v1/support/").json()["goal"] == "1.2"


def test_bad_tickets_are_a_400_with_each_error(api, admin_a, moved):
    rows = [
        {
            "reference": "INC1",
            "address": "nobody@example.nhs.uk",
            "opened_at": "2026-06-01",
            "category": "other",
        }
    ]
    response = api(admin_a).post(
        "/api/v1/organisations/RJ1/support-tickets/", rows, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["column"] == "address"
    bad = api(admin_a).post(
        "/api/v1/organisations/RJ1/support-tickets/", {"x": 1}, content_type="application/json"
    )
    assert bad.status_code == 400


def test_another_trust_gets_404_and_a_read_token_cannot_import(api, admin_a, admin_b, moved):
    wave, mailboxes = moved
    assert (
        api(admin_b)
        .post(
            "/api/v1/organisations/RJ1/support-tickets/", tickets(mailboxes), content_type="application/json"
        )
        .status_code
        == 404
    )
    assert api(admin_b).get("/api/v1/organisations/RJ1/support/").status_code == 404
    assert api(admin_b).get(f"/api/v1/waves/{wave.pk}/support/").status_code == 404
    read_only = api(admin_a, scopes=("read",))
    assert (
        read_only.post(
            "/api/v1/organisations/RJ1/support-tickets/", tickets(mailboxes), content_type="application/json"
        ).status_code
        == 403
    )
    assert not SupportRequest.objects.exists()
