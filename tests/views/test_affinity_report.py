"""The programme office's affinity report: the largest groups, flagged when bigger than an evening wave."""

import pytest

from tests.factories import MailboxFactory


@pytest.fixture
def groups(org_a, org_b):
    MailboxFactory.create_batch(3, organisation=org_a, affinity_group="front-desk")
    MailboxFactory(organisation=org_b, affinity_group="front-desk")
    MailboxFactory.create_batch(2, organisation=org_b, affinity_group="pharmacy-team")


def test_it_lists_the_largest_groups_and_flags_the_too_big(client_for, officer, groups, settings):
    settings.PROGRAMME_EVENING_WAVE_MAILBOXES = 3
    response = client_for(officer).get("/affinity/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "front-desk" in html and "pharmacy-team" in html
    assert html.index("front-desk") < html.index("pharmacy-team")  # largest first
    assert "Too big for an evening" in html
    assert html.count("nhsuk-tag--red") == 1  # only front-desk (4 > 3)
    assert "Groups too big for an evening wave" in html


def test_nothing_is_flagged_when_every_group_fits(client_for, officer, groups):
    html = client_for(officer).get("/affinity/").content.decode()
    assert "nhsuk-tag--red" not in html


def test_an_empty_programme_says_so(client_for, officer):
    assert "No affinity groups yet" in client_for(officer).get("/affinity/").content.decode()


@pytest.mark.parametrize("user", ["admin_a", "viewer"])
def test_only_the_programme_office_sees_it(client_for, request, user):
    assert client_for(request.getfixturevalue(user)).get("/affinity/").status_code == 403


def test_anonymous_is_sent_to_sign_in(client, db):
    response = client.get("/affinity/")
    assert response.status_code == 302 and "/sign-in/" in response["Location"]
