"""The Django admin has a page for every model, and it stays usable at 2.1 million mailboxes."""

import pytest
from django.contrib import admin
from django.urls import reverse

from migrations_app import models
from tests.factories import MailboxFactory, UserFactory
from tests.wave_fixtures import wave_with

MODELS = [
    models.Organisation,
    models.Mailbox,
    models.Wave,
    models.Decision,
    models.Endpoint,
    models.Event,
    models.ImportJob,
    models.Invitation,
    models.User,
    models.Notification,
    models.NotificationSettings,
    models.NotificationTemplate,
    models.OrganisationNotice,
    models.SupportRequest,
    models.OrganisationHold,
]


@pytest.fixture
def superuser_client(client, db):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_has_an_admin_list_page(superuser_client, model):
    assert admin.site.is_registered(model)
    url = reverse(f"admin:migrations_app_{model._meta.model_name}_changelist")
    assert superuser_client.get(url).status_code == 200


def test_the_mailbox_admin_searches_by_exact_address(superuser_client):
    MailboxFactory(email="jane.doe@example.nhs.uk")
    MailboxFactory(email="john.doe@example.nhs.uk")
    url = reverse("admin:migrations_app_mailbox_changelist")
    response = superuser_client.get(url, {"q": "jane.doe@example.nhs.uk"})
    assert b"jane.doe@example.nhs.uk" in response.content
    assert b"john.doe@example.nhs.uk" not in response.content


def test_the_audit_trail_cannot_be_edited_in_the_admin(superuser_client):
    event = models.Event.objects.create(action="organisation.enrolled", subject="RJ1")
    url = reverse("admin:migrations_app_event_change", args=[event.pk])
    response = superuser_client.post(url, {"action": "rewritten"})
    assert response.status_code == 403
    assert models.Event.objects.get(pk=event.pk).action == "organisation.enrolled"


def test_endpoint_secrets_are_not_shown_in_the_admin(superuser_client):
    endpoint = models.Endpoint.objects.create(name="src", kind="imap", role="source", secret="hunter2-secret")
    response = superuser_client.get(reverse("admin:migrations_app_endpoint_change", args=[endpoint.pk]))
    assert response.status_code == 200
    assert b"hunter2-secret" not in response.content


def test_the_admin_cannot_change_a_mailbox_state(superuser_client):
    """The state moves only through the services (conditional UPDATE + Event); the admin shows it read-only."""
    mailbox = MailboxFactory(email="jane.doe@example.nhs.uk", state="ready")
    url = reverse("admin:migrations_app_mailbox_change", args=[mailbox.pk])
    form = superuser_client.get(url).context["adminform"].form
    assert "state" not in form.fields and "wave" not in form.fields
    data = {
        name: "" if value is None else value for name, value in form.initial.items() if name in form.fields
    }
    data.update(display_name="Jane Doe (renamed)", state="migrated", skipped_items="null")
    response = superuser_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    mailbox.refresh_from_db()
    assert (mailbox.display_name, mailbox.state) == ("Jane Doe (renamed)", "ready")


def test_the_admin_shows_a_wave_status_read_only(superuser_client):
    wave = wave_with(status="approved")
    response = superuser_client.get(reverse("admin:migrations_app_wave_change", args=[wave.pk]))
    assert "status" not in response.context["adminform"].form.fields
    assert b'name="status"' not in response.content


def test_the_admin_is_offered_only_to_those_who_can_use_it(client, db):
    client.force_login(UserFactory(username="pat", role="programme_office"))
    assert "Administration" not in client.get("/dashboard/").content.decode()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    assert "Administration" in client.get("/dashboard/").content.decode()
