"""Entra ID sign-in against the fake authority (tests/fakes/microsoft.py), and a real Chromium for the
end-to-end case (Debian's /usr/bin/chromium through Playwright; never a downloaded browser)."""

from __future__ import annotations

import os
import shutil

import pytest
from django.db import connections

from tests.conftest import skip_or_fail
from tests.fakes.microsoft import LOGIN, FakeMicrosoft
from tests.fakes.outbound import allow_fake

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def fake_entra(settings):
    fake = FakeMicrosoft()
    allow_fake(settings, fake.base)
    yield fake
    fake.stop()


@pytest.fixture
def entra(settings, fake_entra):
    """Entra sign-in on, pointed at the fake through MSAL's http_client."""
    settings.ENTRA = {
        "tenant_id": fake_entra.tenant_id,
        "client_id": fake_entra.client_id,
        "credential": fake_entra.client_secret,
        "authority": fake_entra.authority,
        "redirect_uri": "",
        "organisations_claim": "",
        "allow_local_sign_in": False,
        "http_client": fake_entra.session(),
    }
    return fake_entra


def follow_fake_authority(fake: FakeMicrosoft, auth_uri: str, person) -> str:
    """What a browser does at Microsoft: open the authorize page, pick the account; returns the redirect
    back to the portal (the callback URL with code and state)."""
    session = fake.session()
    page = session.get(auth_uri)
    assert page.status_code == 200, page.text
    request = page.text.split("name='request' value='", 1)[1].split("'", 1)[0]
    answer = session.post(
        auth_uri.split("?", 1)[0], data={"request": request, "oid": person.oid}, allow_redirects=False
    )
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


@pytest.fixture
def chromium_page(live_server, entra):
    """A Chromium page whose resolver sends login.microsoftonline.com to the fake's TLS port (the fake's own
    self-signed certificate, accepted for this browser context only). Playwright's request routing is not
    used: it does not see the redirect from the portal to Microsoft."""
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        skip_or_fail(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    port = entra.serve_tls()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", f"--host-resolver-rules=MAP {LOGIN}:443 127.0.0.1:{port}"],
        )
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # The test's own queries ran while Playwright's loop was current, on a connection of their own.
            connections.close_all()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
