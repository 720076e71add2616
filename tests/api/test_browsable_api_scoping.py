"""The browsable API (?format=api) as another trust: its HTML filter forms listed whole tables (every mailbox
address, other trusts' wave names). Each list is fetched as a trust admin of another organisation, in HTML."""

import pytest

from migrations_app.models import Decision, Event
from tests.wave_fixtures import ready_mailboxes, wave_with

LISTS = [
    "/api/v1/mailboxes/",
    "/api/v1/events/",
    "/api/v1/decisions/",
    "/api/v1/waves/",
    "/api/v1/organisations/",
]


@pytest.fixture
def other_trusts_programme(org_a, officer):
    mailboxes = ready_mailboxes(org_a, 3)
    wave = wave_with(org_a, name="Secret wave of RJ1 only")
    Decision.objects.create(wave=wave, organisation=org_a, kind="go", actor=officer, reason="ok")
    Event.objects.create(action="mailbox.migrated", organisation=org_a, mailbox=mailboxes[0], wave=wave)
    return mailboxes, wave


@pytest.mark.parametrize("path", LISTS)
def test_the_html_filter_forms_show_nothing_of_another_trust(
    client_for, admin_b, other_trusts_programme, path
):
    mailboxes, wave = other_trusts_programme
    response = client_for(admin_b).get(path, {"format": "api"})
    assert response.status_code == 200 and "text/html" in response["Content-Type"]
    html = response.content.decode()
    assert "Filters" in html or path.endswith(("waves/", "organisations/"))
    for mailbox in mailboxes:
        assert mailbox.email not in html
    assert wave.name not in html


@pytest.mark.parametrize("path", ["/api/v1/mailboxes/", "/api/v1/events/", "/api/v1/decisions/"])
def test_a_wave_it_may_not_see_answers_like_one_that_does_not_exist(
    api, admin_b, other_trusts_programme, path
):
    _, wave = other_trusts_programme
    hidden = api(admin_b).get(path, {"wave": wave.pk})
    missing = api(admin_b).get(path, {"wave": wave.pk + 1000})
    assert hidden.status_code == missing.status_code == 200
    assert hidden.json()["results"] == missing.json()["results"] == []


@pytest.mark.parametrize("value", ["abc", "1.5", "-1", "99999999999999999999", "1\x00"])
def test_a_wave_id_that_is_not_an_id_is_a_400(api, admin_b, value):
    response = api(admin_b).get("/api/v1/mailboxes/", {"wave": value})
    assert response.status_code == 400
