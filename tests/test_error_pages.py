"""Under `make run` (DEBUG=1) a 404 is the page production shows, never Django's list of URL patterns; an
unknown /api/ URL is problem+json; a 403 is logged as one line, without a traceback."""

import logging

from django.test import override_settings

from tests.factories import OrganisationFactory


@override_settings(DEBUG=True)
def test_an_unknown_api_url_is_problem_json_under_debug(client_for, officer):
    response = client_for(officer).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@override_settings(DEBUG=True)
def test_another_organisations_page_is_the_404_page_under_debug(client_for, admin_a):
    OrganisationFactory(ods_code="RTH")
    for url in ["/organisations/RTH/", "/no-such-page/"]:
        response = client_for(admin_a).get(url)
        page = response.content.decode()
        assert response.status_code == 404 and "Page not found" in page
        assert "URLconf" not in page and "organisation_detail" not in page


@override_settings(DEBUG=True)
def test_a_refusal_is_logged_once_without_a_traceback(client_for, viewer, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client_for(viewer).get("/organisations/enrol/")
    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert len(records) == 1 and "Forbidden" in records[0].getMessage()
    handler = logging.getLogger().handlers[0]
    assert handler.format(records[0]).count("Traceback") == 0
    assert logging.getLogger("django").handlers == []  # the root's handler prints it, once
