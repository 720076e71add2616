"""Browser tests: Playwright for Python driving Debian's Chromium (/usr/bin/chromium; never a downloaded
browser, never `playwright install`) against pytest-django's live server.

Skipped with the reason where Chromium or Playwright is missing; REQUIRE_SERVICES=1 turns that into a failure.
A failed test leaves a screenshot of every page it had open under var/browser-failures/ and prints the path.
"""

import os
import re
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

CHROMIUM = Path(os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "var" / "browser-failures"
PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def chromium(django_db_setup, django_db_blocker):
    """One Chromium per test module. Module-scoped, not session-scoped: Playwright's sync API keeps an event loop
    running in this thread while it is started, and Django refuses ORM calls in a thread with a running loop
    unless DJANGO_ALLOW_ASYNC_UNSAFE is set; so it is set only while the browser runs, for these tests (whose own
    ORM calls are synchronous and safe), and the tests after them run with Django's check intact."""
    if not CHROMIUM.exists():
        skip_or_fail(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail(
            "the browser tests need Playwright for Python (pip install playwright; no browser download)"
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        manager = sync_playwright().start()
        try:
            # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
            browser = manager.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            yield browser
            browser.close()
        finally:
            manager.stop()


@pytest.fixture
def browser_pages(chromium, live_server, request):
    """new_page(user=None) -> a page in its own browser context (its own cookies), signed in through the sign-in
    form when a user is given. Screenshots of them all on failure."""
    contexts, pages, refused = [], [], []

    def new_page(user=None):
        context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        # anything the Content-Security-Policy refuses (an inline script, a style element, a foreign host), but
        # ReDoc's "API docs by Redocly" logo, which its bundle always loads from cdn.redoc.ly: refused on purpose
        # by the docs page's policy (templates/api_docs/redoc.html), so no request leaves. (The NHS.UK
        # stylesheet is built without its remote web font, so a refusal of assets.nhs.uk fails the test.)
        page.on(
            "console",
            lambda message: (
                refused.append(f"{page.url}: {message.text}")
                if message.type == "error"
                and "Content Security Policy" in message.text
                and "https://cdn.redoc.ly/" not in message.text
                else None
            ),
        )
        pages.append(page)
        if user is not None:
            sign_in(page, user.username)
        return page

    yield new_page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        for n, page in enumerate(pages):
            path = SCREENSHOTS / f"{name}-{n}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot of the failed page: {path}")
            except Exception as exc:  # a crashed page: say so, keep the test's own failure
                print(f"no screenshot of page {n}: {exc}")
    for context in contexts:
        context.close()
    assert refused == [], "the Content-Security-Policy refused parts of a page"


def sign_in(page, username: str) -> None:
    page.goto("/sign-in/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))


def assert_accessible(page) -> None:
    """axe-core (node_modules/axe-core, installed by npm ci) on the page as it is: no serious or critical
    violations."""
    if not AXE.exists():
        skip_or_fail(f"axe-core is missing at {AXE}: run npm ci")
    page.evaluate(AXE.read_text())  # through DevTools: the page's CSP rightly refuses an injected script tag
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{page.url}: " + "; ".join(bad)
