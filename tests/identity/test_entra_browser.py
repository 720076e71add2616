"""Sign-in with Entra ID end to end in a real Chromium: the portal's button, Microsoft's page (the fake, answering
for login.microsoftonline.com), the callback, the role mapped; and a person with no role turned away."""

from __future__ import annotations

from migrations_app.models import User


def test_signing_in_through_microsoft_maps_the_role(chromium_page, live_server, entra):
    person = entra.add_person(
        "jane.doe@nhs.net", "Jane Doe", ["Programme.Officer"], given_name="Jane", family_name="Doe"
    )
    page = chromium_page

    page.goto(f"{live_server.url}/organisations/")
    assert "/sign-in/" in page.url
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.wait_for_url(
        lambda url: url.startswith(
            f"https://login.microsoftonline.com/{entra.tenant_id}/oauth2/v2.0/authorize?"
        )
    )
    assert page.title() == "Sign in to your account"
    page.get_by_role("button", name="jane.doe@nhs.net").click()

    page.wait_for_url(lambda url: url.startswith(f"{live_server.url}/organisations/"))
    assert "Jane Doe" in page.locator("header").inner_text()
    assert "Programme office" in page.locator("header").inner_text()
    user = User.objects.get(entra_oid=person.oid)
    assert user.role == User.Role.PROGRAMME_OFFICE

    page.get_by_role("link", name="Sign out").click()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server.url}/sign-in/?signed_out=entra")
    page.get_by_role("link", name="Sign out of your Microsoft account too").click()
    page.wait_for_url(lambda url: "/oauth2/v2.0/logout?post_logout_redirect_uri=" in url)
    page.goto(f"{live_server.url}/organisations/")
    assert "/sign-in/" in page.url


def test_a_person_with_no_role_is_turned_away(chromium_page, live_server, entra):
    entra.add_person("visitor@nhs.net", "Visitor", [])
    page = chromium_page

    page.goto(f"{live_server.url}/sign-in/")
    page.get_by_role("button", name="Sign in with Microsoft").click()
    page.get_by_role("button", name="visitor@nhs.net").click()

    page.wait_for_url(lambda url: url.startswith(f"{live_server.url}/sign-in/entra/callback/?"))
    assert page.get_by_role("heading", level=1).inner_text() == "You do not have access to this portal"
    page.goto(f"{live_server.url}/organisations/")
    assert "/sign-in/" in page.url
