"""axe-core on the main pages, as a signed-in programme officer and as the public: no serious or critical
accessibility violations."""

import pytest

from migrations_app.models import Mailbox
from migrations_app.services.events import event_record
from tests.browser.conftest import assert_accessible
from tests.factories import OrganisationFactory, UserFactory
from tests.status_fixtures import wave_in_states


@pytest.mark.django_db(transaction=True)
def test_the_main_pages_have_no_serious_accessibility_violations(browser_pages):
    organisation = OrganisationFactory(ods_code="Y03", name="Hill Top Practice")
    wave = wave_in_states([organisation], {"migrated": 3, "syncing": 1, "failed": 2}, hours_ago=30)
    mailbox = Mailbox.objects.filter(state="failed").first()
    event_record(action="mailbox.failed", organisation=organisation, mailbox=mailbox, subject=mailbox.email)
    officer = UserFactory(username="a11y.officer", role="programme_office")

    public = browser_pages()
    public.goto("/when-does-my-mailbox-move/")
    assert_accessible(public)
    public.fill("#email", mailbox.email)
    public.get_by_role("button", name="Find out").click()
    public.locator("#answer").wait_for()
    assert_accessible(public)
    public.goto("/sign-in/")
    assert_accessible(public)

    page = browser_pages(officer)
    for url in [
        "/dashboard/",
        "/organisations/",
        "/organisations/Y03/",
        "/waves/",
        f"/waves/{wave.pk}/",
        "/mailboxes/?q=m",
        f"/mailboxes/{mailbox.pk}/",
        "/failures/?code=AUTH_FAILED",
        "/audit/",
    ]:
        page.goto(url)
        assert_accessible(page)
