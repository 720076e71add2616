"""One way in: the portal's sign-in page. DRF's login route and the admin's login form were second doors that
took a local password even with Entra on and local sign-in off (and DRF's answered 500 to a wrong password)."""

import pytest
from django.contrib.auth import SESSION_KEY

from tests.factories import UserFactory

PASSWORD = "correct-horse-battery-staple"  # noqa: S105


@pytest.fixture
def staff(db):
    return UserFactory(username="officer@nhs.net", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.mark.parametrize("path", ["/api/v1/auth/login/", "/api/v1/auth/logout/"])
def test_there_is_no_api_login_route(client, staff, path):
    assert client.get(path).status_code == 404
    response = client.post(path, {"username": staff.username, "password": PASSWORD})
    assert response.status_code == 404 and SESSION_KEY not in client.session


def test_the_admin_login_form_sends_people_to_the_portal_sign_in(client, staff):
    page = client.get("/admin/login/")
    assert page.status_code == 302 and page["Location"].startswith("/sign-in")
    posted = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert posted.status_code == 302 and SESSION_KEY not in client.session


def test_with_entra_on_and_local_sign_in_off_no_door_takes_a_password(client, staff, entra):
    for path in ("/api/v1/auth/login/", "/admin/login/", "/sign-in/"):
        client.post(path, {"username": staff.username, "password": PASSWORD})
        assert SESSION_KEY not in client.session, path
