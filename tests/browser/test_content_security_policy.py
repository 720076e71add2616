"""The Content-Security-Policy holds in a real Chromium: pages send it, nothing on them is refused (the
browser_pages fixture fails a test on any CSP console error), and what used to be inline still runs: the NHS.UK
frontend starts, htmx swaps, the API docs render."""

import pytest

from tests.factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_pages_run_under_the_policy(browser_pages):
    officer = UserFactory(username="csp.officer", role="programme_office")
    public = browser_pages()
    response = public.goto("/when-does-my-mailbox-move/")
    policy = response.headers["content-security-policy"]
    assert (
        "script-src 'self' 'sha256-" in policy
        and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    # the NHS.UK template's own inline script (allowed by its hash) and the frontend started from portal.js
    public.wait_for_function("document.body.classList.contains('nhsuk-frontend-supported')")
    assert "js-enabled" in public.evaluate("document.body.className")

    page = browser_pages(officer)
    page.goto("/waves/planner/")
    page.get_by_role(
        "button", name="Preview the plan"
    ).click()  # an htmx request, swapped in under the policy
    page.locator("#preview h2", has_text="Preview from").wait_for()
    page.goto("/api/schema/swagger/")
    page.locator(".swagger-ui .info").wait_for()


def test_an_inline_script_would_be_refused(client, db):
    """The policy the pages get names no 'unsafe-inline' for scripts and frames nothing."""
    policy = client.get("/sign-in/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert (
        "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    )
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
