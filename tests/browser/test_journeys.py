"""The journeys people make, in a real browser (Debian's Chromium) against the live server:

1. a trust admin signs in, enrols an organisation, uploads an inventory with bad rows, sees the errors, fixes
   the file and imports it;
2. a programme officer plans, a trust admin gives go, an approver approves, and the wave page follows the wave
   live to completion: a real Celery worker runs the moves with the simulated engine while the page polls.
"""

import re

import pytest
from celery.contrib.testing.worker import start_worker

from migrations_app.models import Mailbox, Organisation, Wave
from migrations_app.services.execution import wave_tick
from tests.browser.conftest import assert_accessible
from tests.factories import OrganisationFactory, UserFactory
from tests.wave_fixtures import ready_mailboxes

HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"
BAD = (
    HEADER
    + "ana.silva@y01.nhs.uk,Ana Silva,user,1000,10,,\nnot-an-address,Bad,user,1,1,,\ntom@y01.nhs.uk,Tom,cupboard,1,1,,\n"
)
FIXED = (
    HEADER
    + "ana.silva@y01.nhs.uk,Ana Silva,user,1000,10,,\nbad.fixed@y01.nhs.uk,Bad,user,1,1,,\ntom@y01.nhs.uk,Tom,room,1,1,,\n"
)


def upload(page, text: str, name: str) -> None:
    page.get_by_role("button", name="Upload inventory").click()
    page.set_input_files(
        "input[type=file][name=file]", files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode()}]
    )
    page.get_by_role("button", name="Upload and import").click()


@pytest.mark.django_db(transaction=True)
def test_a_trust_admin_enrols_and_imports_an_inventory_after_fixing_its_errors(browser_pages):
    admin = UserFactory(username="trust.admin", role="trust_admin")
    page = browser_pages(admin)

    page.get_by_role("link", name="Organisations").first.click()
    page.get_by_role("link", name="Enrol an organisation").click()
    page.fill("#ods_code", "Y01")
    page.fill("#name", "Ysgol Practice")
    page.select_option("#kind", "gp_practice")
    page.select_option("#region", "london")
    page.fill("#primary_name", "Ana Silva")
    page.fill("#primary_email", "ana.silva@nhs.net")
    page.fill("#technical_name", "Tom Reed")
    page.fill("#technical_email", "tom.reed@nhs.net")
    for box in page.locator("input[name=gates]").all():
        box.check()
    page.get_by_role("button", name="Enrol organisation").click()
    page.wait_for_url(re.compile(r"/organisations/Y01/$"))
    assert "Ysgol Practice (Y01) is enrolled" in page.content()
    assert_accessible(page)

    upload(page, BAD, "y01-inventory.csv")
    page.get_by_text("Nothing was imported").wait_for()
    errors = page.locator("table", has_text="Rows with errors").inner_text()
    assert "not-an-address" in errors and "cupboard" in errors
    assert re.search(r"\b3\b", errors) and re.search(r"\b4\b", errors)  # the line numbers
    assert_accessible(page)
    assert not Mailbox.objects.exists()

    page.get_by_role("link", name="Y01").first.click()
    upload(page, FIXED, "y01-inventory-fixed.csv")
    page.get_by_text("Imported: 3 added").wait_for()
    assert sorted(Mailbox.objects.values_list("email", flat=True)) == [
        "ana.silva@y01.nhs.uk",
        "bad.fixed@y01.nhs.uk",
        "tom@y01.nhs.uk",
    ]
    page.goto("/organisations/Y01/")
    assert "of 3 mailboxes moved" in page.locator("#organisation-progress").inner_text()


@pytest.mark.django_db(transaction=True)
def test_plan_go_approve_and_watch_the_wave_move_live(browser_pages, real_broker, settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True}}
    organisation = OrganisationFactory(
        ods_code="Y02",
        name="Brook Lane Surgery",
        status=Organisation.Status.READY,
        **dict.fromkeys(Organisation.GATES, True),
    )
    ready_mailboxes(organisation, 6)
    officer = UserFactory(username="planner", role="programme_office")
    approver = UserFactory(username="approver", role="programme_office")
    admin = UserFactory(username="brook.admin", role="trust_admin")
    admin.organisations.add(organisation)

    # the programme officer plans and proposes
    office = browser_pages(officer)
    office.goto("/waves/planner/")
    office.get_by_role("button", name="Preview the plan").click()
    office.get_by_role("button", name=re.compile(r"Save these 1 draft waves")).click()
    office.wait_for_url(re.compile(r"/waves/$"))
    wave = Wave.objects.get()
    office.goto(f"/waves/{wave.pk}/")
    office.get_by_role("link", name="Propose for approval").click()
    office.get_by_role("button", name="Yes, propose for approval").click()
    office.locator("#wave-panel").get_by_text("Proposed").first.wait_for()

    # the trust admin says go
    trust = browser_pages(admin)
    trust.goto(f"/waves/{wave.pk}/")
    trust.get_by_role("button", name="Go for Y02").click()
    trust.locator("#wave-panel .nhsuk-tag", has_text="Go").first.wait_for()
    assert_accessible(trust)

    # another officer approves; the page now follows the wave live
    approving = browser_pages(approver)
    approving.goto(f"/waves/{wave.pk}/")
    approving.get_by_role("button", name="Approve").click()
    live = approving.locator("#wave-live")
    approving.wait_for_selector('#wave-live[data-live="yes"]')
    assert "0</strong> of 6 mailboxes moved" in live.inner_html()

    # the evening comes: the window opens, beat ticks, a real worker moves the mailboxes
    Wave.objects.filter(pk=wave.pk).update(
        starts_at=wave.starts_at.__class__.now(tz=wave.starts_at.tzinfo)
        - (wave.ends_at - wave.starts_at) / 12,
        ends_at=wave.starts_at.__class__.now(tz=wave.starts_at.tzinfo) + (wave.ends_at - wave.starts_at),
    )
    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # beat's tick starts the wave and queues its mailboxes; each one the worker finishes pumps the next
        assert wave_tick()["started"] == 1
        # the page gets there by itself (no reload): polling stops with the 286 once the wave completed
        approving.wait_for_selector('#wave-live[data-live="no"]', timeout=60_000)
    text = live.inner_text()
    assert "6 of 6 mailboxes moved (100%)" in text and "Completed" in text
    assert set(Mailbox.objects.values_list("state", flat=True)) == {Mailbox.State.MIGRATED}
    assert_accessible(approving)
