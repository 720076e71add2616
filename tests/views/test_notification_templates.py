"""The programme office's notification templates: edit, preview with a real mailbox, switch on (only after a
preview); nobody else may see them. And Notify's receipt callback, which needs our bearer token."""

import datetime as dt
import json

import pytest

from migrations_app.models import (
    Contact,
    Event,
    Mailbox,
    Notification,
    NotificationTemplate,
    OrganisationNotice,
)
from tests.notify_fixtures import wave_in
from tests.wave_fixtures import ready_mailboxes

URL = "/notifications/templates/"


def test_only_the_programme_office_sees_the_templates(client_for, admin_a, viewer, officer):
    assert client_for(admin_a).get(URL).status_code == 403
    assert client_for(viewer).get(f"{URL}first/").status_code == 403
    html = client_for(officer).get(URL).content.decode()
    assert "Reminder (days before)" in html and "Off" in html


def test_the_preview_uses_a_real_mailbox_and_unlocks_the_switch(client_for, officer, org_a):
    _, (mailbox, *_) = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=1)
    OrganisationNotice.objects.create(organisation=org_a, paragraph="Call the RJ1 desk on 0207 000 0000.")
    client = client_for(officer)
    refused = client.post(f"{URL}reminder/", {"action": "on"}, follow=True)
    assert "Preview the template" in refused.content.decode()
    assert not NotificationTemplate.objects.filter(enabled=True).exists()

    html = client.post(f"{URL}reminder/", {"action": "preview", "email": mailbox.email}).content.decode()
    assert mailbox.email in html and "(UK time)" in html and "Call the RJ1 desk" in html
    client.post(f"{URL}reminder/", {"action": "on"})
    assert NotificationTemplate.objects.get(moment="reminder").enabled
    assert Event.objects.filter(action="notification.template_on").exists()


def test_saving_new_words_switches_the_template_off(client_for, officer, org_a):
    client = client_for(officer)
    wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=1)
    client.post(f"{URL}after/", {"action": "preview"})
    client.post(f"{URL}after/", {"action": "on"})
    response = client.post(
        f"{URL}after/", {"action": "save", "subject": "Moved: ((address))", "body": "Hello ((name))"}
    )
    assert response.status_code == 302
    template = NotificationTemplate.objects.get(moment="after")
    assert (template.subject, template.enabled) == ("Moved: ((address))", False)
    bad = client.post(f"{URL}after/", {"action": "save", "subject": "x", "body": "((nhs_number))"})
    assert "Unknown placeholder" in bad.content.decode()


@pytest.mark.django_db
def test_receipts_need_our_bearer_token(client, settings, org_a):
    settings.NOTIFY_CALLBACK_TOKEN = "a-long-callback-token"
    _, (mailbox,) = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=1)
    notification = Notification.objects.create(
        mailbox=mailbox,
        organisation_id=org_a.pk,
        moment="first",
        recipient=mailbox.email,
        window_starts_at=mailbox.wave.starts_at,
        status="sent",
        notify_id="740e5834-3a29-46b4-9a6f-16142fde533a",
        created_at=mailbox.wave.starts_at,
    )
    body = json.dumps({"id": notification.notify_id, "status": "delivered", "to": mailbox.email})
    post = lambda auth: client.post(  # noqa: E731
        "/notify/receipts", body, content_type="application/json", HTTP_AUTHORIZATION=auth
    )
    assert post("Bearer wrong").status_code == 401
    assert post("").status_code == 401
    notification.refresh_from_db()
    assert notification.status == "sent"
    assert post("Bearer a-long-callback-token").status_code == 200
    notification.refresh_from_db()
    assert notification.status == "delivered"
    bad = client.post(
        "/notify/receipts",
        "[]",
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer a-long-callback-token",
    )
    assert bad.status_code == 400


def test_the_digest_preview_shows_an_organisations_real_figures(client_for, officer, org_a):
    wave, staff = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=2)
    shared = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=1, kind=Mailbox.Kind.SHARED)[1][0]
    Mailbox.objects.filter(pk=shared.pk).update(wave=wave)
    Contact.objects.create(organisation=org_a, role="primary", name="Lead", email="lead@rj1.nhs.uk")
    client = client_for(officer)
    html = client.post(f"{URL}digest/", {"action": "preview", "email": staff[0].email}).content.decode()
    assert "3 mailboxes of yours move in this window" in html
    assert f"- {shared.email} (shared)" in html
    assert "lead@rj1.nhs.uk" in html and "/organisations/RJ1/" in html and wave.name in html
    client.post(f"{URL}digest/", {"action": "on"})
    assert NotificationTemplate.objects.get(moment="digest").enabled

    # the digest's own placeholders: an owner's name means nothing to it
    bad = client.post(f"{URL}digest/", {"action": "save", "subject": "x", "body": "Dear ((name))"})
    assert "Unknown placeholder(s): name" in bad.content.decode()
    client.post(f"{URL}digest/", {"action": "save", "subject": "((organisation))", "body": "((summary))"})
    assert not NotificationTemplate.objects.get(moment="digest").enabled


def test_the_digest_preview_needs_a_mailbox_in_a_wave(client_for, officer, org_a):
    (loose,) = ready_mailboxes(org_a, 1)
    html = (
        client_for(officer)
        .post(f"{URL}digest/", {"action": "preview", "email": loose.email})
        .content.decode()
    )
    assert "Preview the digest with a mailbox that is in a wave" in html
    assert NotificationTemplate.objects.filter(moment="digest", previewed_at__isnull=False).count() == 0
