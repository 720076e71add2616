"""A wave shared by two trusts: each trust sees only its own organisations' figures (page, CSV, API); the
programme office sees the whole wave."""

import re

import pytest
from django.test import Client

from migrations_app.services.tokens import token_create
from tests.wave_fixtures import ready_mailboxes, wave_with


@pytest.fixture
def shared(org_a, org_b):
    ready_mailboxes(org_a, 3, size=1_000)
    ready_mailboxes(org_b, 7, size=1_000)
    return wave_with(org_a, org_b, status="proposed", name="Shared evening")


def _mailboxes_row(html: str) -> str:
    return re.search(r"Mailboxes\s*</dt>\s*<dd[^>]*>\s*([^<]+)", html).group(1).strip()


def test_the_wave_page_shows_a_trust_only_its_own_figures(client_for, admin_a, officer, shared):
    assert _mailboxes_row(client_for(admin_a).get(f"/waves/{shared.pk}/").content.decode()).startswith("3 of")
    assert _mailboxes_row(client_for(officer).get(f"/waves/{shared.pk}/").content.decode()).startswith(
        "10 of"
    )


def _api(user):
    _, raw = token_create(user=user, name="t", scopes=["read"], expires_at=None)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_the_wave_list_csv_and_api_show_a_trust_only_its_own_figures(client_for, admin_b, shared, officer):
    response = client_for(admin_b).get("/waves/export.csv")
    csv = b"".join(response.streaming_content).decode().splitlines()
    assert csv[1].split(",")[6:8] == ["7", "7000"]
    assert _api(admin_b).get(f"/api/v1/waves/{shared.pk}/").json()["planned_mailboxes"] == 7
    assert _api(officer).get(f"/api/v1/waves/{shared.pk}/").json()["planned_mailboxes"] == 10
