"""Pre-create and invite (programme office only), and accepting the invitation link."""

import datetime
import hashlib
import re

import pytest
from django.core import mail
from django.utils import timezone

from migrations_app.models import Event, Invitation, Organisation, User
from tests.factories import UserFactory

INVITE = {
    "ods_code": "a81001",
    "name": "Riverside Surgery",
    "kind": "gp_practice",
    "parent_ods_code": "RJ1",
    "region": "london",
    "invite_email": "practice.manager@nhs.net",
}


@pytest.fixture
def invite(django_capture_on_commit_callbacks):
    """invite(client) sends an invitation as the programme office and returns the raw token from the e-mail
    (the e-mail goes on commit, so the callbacks are run here)."""

    def send(client) -> str:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/organisations/invite/", INVITE)
        assert response.status_code == 302, response.content.decode()[:2000]
        match = re.search(r"https?://[^\s]+/invitations/([^/\s]+)/", mail.outbox[-1].body)
        return match.group(1)

    return send


def test_the_programme_office_pre_creates_and_invites(
    client_for, officer, org_a, django_capture_on_commit_callbacks
):
    client = client_for(officer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/organisations/invite/", INVITE)
    assert response.status_code == 302 and response["Location"] == "/organisations/A81001/"
    org = Organisation.objects.get(ods_code="A81001")
    assert org.status == Organisation.Status.INVITED and org.parent == org_a
    invitation = Invitation.objects.get(organisation=org)
    assert invitation.email == "practice.manager@nhs.net" and invitation.invited_by == officer
    assert invitation.expires_at - timezone.now() > datetime.timedelta(days=13)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["practice.manager@nhs.net"]
    assert Event.objects.filter(action="organisation.invited", organisation=org).exists()


def test_the_token_is_stored_only_as_a_hash(invite, client_for, officer, org_a):
    token = invite(client_for(officer))
    invitation = Invitation.objects.get()
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert len(token) >= 32
    for value in Invitation.objects.values_list(flat=False).get():
        assert token not in str(value)
    for event in Event.objects.all():
        assert token not in str(event.data) and token not in event.message


def test_the_email_has_the_link(invite, client_for, officer, org_a, settings):
    settings.PORTAL_BASE_URL = "https://migrate.example.nhs.uk"
    token = invite(client_for(officer))
    body = mail.outbox[0].body
    assert f"https://migrate.example.nhs.uk/invitations/{token}/" in body
    assert "Riverside Surgery" in body and "A81001" in body


def test_the_invitation_shows_on_the_organisation_for_the_programme_office(
    invite, client_for, officer, org_a
):
    client = client_for(officer)
    invite(client)
    assert "practice.manager@nhs.net" in client.get("/organisations/A81001/").content.decode()


def test_it_refuses_an_existing_ods_code(client_for, officer, org_a):
    response = client_for(officer).post(
        "/organisations/invite/", {**INVITE, "ods_code": "rj1", "parent_ods_code": ""}
    )
    assert response.status_code == 400
    assert "RJ1 already exists in the portal" in response.content.decode()
    assert not mail.outbox


def test_it_shows_validation_errors(client_for, officer):
    response = client_for(officer).post(
        "/organisations/invite/",
        {**INVITE, "ods_code": "A-1", "invite_email": "nope", "parent_ods_code": "QQQ"},
    )
    html = response.content.decode()
    assert "Enter an ODS code of 1 to 9 letters and digits" in html
    assert "Enter an email address in the correct format" in html
    assert "There is no organisation with ODS code QQQ" in html
    assert not Organisation.objects.exists() and not mail.outbox


@pytest.mark.parametrize("user", ["admin_a", "viewer"])
def test_only_the_programme_office_can_invite(client_for, request, user, org_a):
    client = client_for(request.getfixturevalue(user))
    assert client.get("/organisations/invite/").status_code == 403
    assert client.post("/organisations/invite/", INVITE).status_code == 403
    assert not Organisation.objects.filter(ods_code="A81001").exists()
    assert not mail.outbox


# --- accepting ---------------------------------------------------------------------------------------------


def test_someone_new_creates_an_account_and_becomes_the_admin(invite, client_for, client, officer, org_a):
    token = invite(client_for(officer))
    client.logout()
    page = client.get(f"/invitations/{token}/")
    assert page.status_code == 200
    assert 'value="practice.manager@nhs.net"' in page.content.decode()  # prefilled
    response = client.post(
        f"/invitations/{token}/",
        {
            "first_name": "Priya",
            "last_name": "Shah",
            "email": "Practice.Manager@nhs.net",
            "password1": "a long and unusual passphrase",
            "password2": "a long and unusual passphrase",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/organisations/enrol/?ods_code=A81001"
    user = User.objects.get(username="practice.manager@nhs.net")
    assert user.role == User.Role.TRUST_ADMIN and user.check_password("a long and unusual passphrase")
    assert user.organisations.filter(ods_code="A81001").exists()
    assert int(client.session["_auth_user_id"]) == user.pk  # signed in
    invitation = Invitation.objects.get()
    assert invitation.accepted_by == user and invitation.accepted_at
    assert Event.objects.filter(action="invitation.accepted", actor=user).exists()
    # and can now complete the enrolment of the pre-created organisation
    assert 'value="Riverside Surgery"' in client.get(response["Location"]).content.decode()


def test_the_new_account_password_is_validated(invite, client_for, client, officer, org_a):
    token = invite(client_for(officer))
    client.logout()
    data = {
        "first_name": "P",
        "last_name": "S",
        "email": "p@nhs.net",
        "password1": "short",
        "password2": "other",
    }
    html = client.post(f"/invitations/{token}/", data).content.decode()
    assert "The passwords do not match" in html
    data["password2"] = "short"
    html = client.post(f"/invitations/{token}/", data).content.decode()
    assert "This password is too short" in html
    assert not User.objects.filter(username="p@nhs.net").exists()
    assert Invitation.objects.get().accepted_at is None


def test_a_signed_in_user_accepts_with_a_button(invite, client_for, officer, org_a):
    client = client_for(officer)
    token = invite(client)
    person = UserFactory(username="someone", role="viewer")
    client = client_for(person)
    html = client.get(f"/invitations/{token}/").content.decode()
    assert "Accept the invitation" in html and "Create your account" not in html
    response = client.post(f"/invitations/{token}/")
    assert response.status_code == 302
    person.refresh_from_db()
    assert person.role == User.Role.TRUST_ADMIN
    assert person.organisations.filter(ods_code="A81001").exists()


def test_a_used_token_is_refused(invite, client_for, officer, org_a):
    client = client_for(officer)
    token = invite(client)
    first = UserFactory(username="first", role="trust_admin")
    client_for(first).post(f"/invitations/{token}/")
    second = UserFactory(username="second", role="trust_admin")
    client = client_for(second)
    response = client.get(f"/invitations/{token}/")
    assert response.status_code == 410
    assert "This invitation has already been used" in response.content.decode()
    assert client.post(f"/invitations/{token}/").status_code == 410
    assert not second.organisations.exists()


def test_an_expired_token_is_refused(invite, client_for, client, officer, org_a):
    token = invite(client_for(officer))
    Invitation.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    client.logout()
    response = client.get(f"/invitations/{token}/")
    assert response.status_code == 410
    assert "This invitation expired on" in response.content.decode()
    data = {
        "first_name": "P",
        "last_name": "S",
        "email": "p@nhs.net",
        "password1": "a long and unusual passphrase",
    }
    data["password2"] = data["password1"]
    assert client.post(f"/invitations/{token}/", data).status_code == 410
    assert not User.objects.filter(username="p@nhs.net").exists()


def test_an_unknown_token_is_refused(client, db):
    response = client.get("/invitations/not-a-real-token/")
    assert response.status_code == 404
    assert "This invitation link is not valid" in response.content.decode()


def test_an_existing_email_must_sign_in_first(invite, client_for, client, officer, org_a):
    token = invite(client_for(officer))
    UserFactory(username="practice.manager@nhs.net")
    client.logout()
    data = {
        "first_name": "P",
        "last_name": "S",
        "email": "practice.manager@nhs.net",
        "password1": "a long and unusual passphrase",
        "password2": "a long and unusual passphrase",
    }
    html = client.post(f"/invitations/{token}/", data).content.decode()
    assert "An account with this email address already exists. Sign in first" in html
