"""Sign in with Django's LoginView (Jinja template), sign out with a confirm page."""

from migrations_app.models import User
from tests.factories import UserFactory


def test_it_signs_in_with_the_right_password(client, db):
    UserFactory(username="jane", password="correct horse battery staple")
    response = client.post("/sign-in/", {"username": "jane", "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"]


def test_it_shows_an_error_summary_for_bad_credentials(client, db):
    UserFactory(username="jane")
    response = client.post("/sign-in/", {"username": "jane", "password": "wrong"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "nhsuk-error-summary" in html
    assert "Enter a correct username and password" in html
    assert 'href="#username"' in html
    assert "<title>Error: Sign in" in html


def test_it_asks_for_both_fields(client, db):
    response = client.post("/sign-in/", {"username": "", "password": ""})
    html = response.content.decode()
    assert "Enter your username" in html and "Enter your password" in html


def test_the_sign_in_page_has_a_csrf_token(client, db):
    response = client.get("/sign-in/")
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in response.content.decode()


def test_it_sends_the_anonymous_to_sign_in(client, db):
    for path in ["/", "/organisations/", "/organisations/enrol/", "/imports/", "/affinity/"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/sign-in/?next="), path


def test_sign_out_asks_to_confirm_on_get(client_for, viewer):
    client = client_for(viewer)
    response = client.get("/sign-out/")
    assert response.status_code == 200
    assert 'action="/sign-out/"' in response.content.decode()
    assert client.session.get("_auth_user_id")  # still signed in


def test_sign_out_signs_out_on_post(client_for, viewer):
    client = client_for(viewer)
    response = client.post("/sign-out/")
    assert response.status_code == 302
    assert response["Location"] == "/sign-in/"
    assert "_auth_user_id" not in client.session


def test_the_header_names_the_user_and_links_to_sign_out(client_for, db):
    user = UserFactory(username="pat", first_name="Pat", last_name="Kaur", role=User.Role.TRUST_ADMIN)
    html = client_for(user).get("/organisations/").content.decode()
    assert "Pat Kaur" in html
    assert 'href="/sign-out/"' in html
