"""In a real browser: a member of staff asks for help from the public page, and the programme office previews a
notification template with a real mailbox and switches it on."""

import datetime as dt

import pytest
from django.core.cache import cache

from migrations_app.models import Mailbox, NotificationTemplate, OrganisationNotice, SupportRequest, Wave
from tests.browser.conftest import assert_accessible
from tests.factories import UserFactory
from tests.notify_fixtures import wave_in


@pytest.mark.django_db(transaction=True)
def test_staff_ask_for_help_from_the_public_page(browser_pages, org_a):
    cache.clear()
    wave, (mailbox, *_) = wave_in(
        org_a, starts_in=-dt.timedelta(days=1), mailboxes=2, status=Wave.Status.COMPLETED
    )
    Mailbox.objects.filter(wave=wave).update(state=Mailbox.State.MIGRATED)
    page = browser_pages()
    page.goto("/when-does-my-mailbox-move/")
    page.fill("#email", mailbox.email)
    page.get_by_role("button", name="Find out").click()
    page.get_by_role("link", name="I need help with my moved mailbox").click()
    assert page.input_value("#email") == mailbox.email  # carried over from the lookup
    assert_accessible(page)

    page.get_by_role("button", name="Send").click()  # nothing chosen yet
    assert page.get_by_text("There is a problem").is_visible()
    page.get_by_label("Mail on my phone stopped working").check()
    page.fill("#description", "The phone app asks for a password and then fails")
    page.get_by_role("button", name="Send").click()
    assert page.get_by_text("We have your request").is_visible()
    request = SupportRequest.objects.get()
    assert (request.mailbox_id, request.category) == (mailbox.pk, "phone")


@pytest.mark.django_db(transaction=True)
def test_the_programme_office_previews_a_template_and_switches_it_on(browser_pages, org_a):
    officer = UserFactory(username="office", role="programme_office")
    _, (mailbox, *_) = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=1)
    OrganisationNotice.objects.create(organisation=org_a, paragraph="Ring the RJ1 desk on 0207 000 0000.")
    page = browser_pages(officer)
    page.goto("/notifications/templates/")  # under "More" in the header at this width
    page.get_by_role("link", name="Reminder (days before)").click()
    assert page.get_by_text("Preview this template with a real mailbox before switching it on").is_visible()
    assert page.get_by_role("button", name="Switch on").count() == 0

    page.fill("#email", mailbox.email)
    page.get_by_role("button", name="Preview").click()
    subject = page.text_content("#preview-subject")
    body = page.text_content("#preview-body")
    assert subject.startswith("Reminder: your NHS mailbox moves on") and "(UK time)" in subject
    assert org_a.name not in subject and mailbox.email in body and "Ring the RJ1 desk" in body
    assert_accessible(page)

    page.get_by_role("button", name="Switch on").click()
    assert page.get_by_text("Reminder (days before) is on").is_visible()
    assert NotificationTemplate.objects.get(moment="reminder").enabled
