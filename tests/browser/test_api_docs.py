"""The API's documentation pages (README: Swagger UI and ReDoc, "both served locally") fetch nothing from another
host, and the schema opens in the browser rather than downloading."""

import pytest

from tests.factories import UserFactory

BLOCKED_BEFORE_LEAVING = "csp"  # stopped by the browser: no request left the machine


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/schema/redoc/", "/api/schema/swagger/"])
def test_the_api_docs_fetch_nothing_from_another_host(browser_pages, live_server, path):
    page = browser_pages(UserFactory(username="docs.reader", role="viewer"))
    asked, failed = [], {}
    page.on("request", lambda r: asked.append(r.url))
    page.on("requestfailed", lambda r: failed.__setitem__(r.url, r.failure))
    page.goto(path)
    page.wait_for_load_state("networkidle")
    assert page.locator("text=Migration control portal API").first.is_visible()
    foreign = [
        url
        for url in asked
        if not url.startswith((live_server.url, "data:", "blob:"))
        and failed.get(url) != BLOCKED_BEFORE_LEAVING
    ]
    assert not foreign, foreign
