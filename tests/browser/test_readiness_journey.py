"""The main journey in Chromium, as a new trust admin: enrol, upload an inventory, run the readiness check and
watch it, see the blocked mailboxes with their reasons, fix one (a corrected inventory) and check again, see the
organisation offered to the planner; then the programme office plans, the trust says go, a second person
approves, and a real Celery worker runs the wave to the end while the page follows it."""

import datetime as dt
import re

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from migrations_app.engines import EndpointSpec, MailboxSpec
from migrations_app.engines.simulated import SimulatedEngine
from migrations_app.models import Mailbox, Organisation, Wave
from migrations_app.services.execution import wave_tick
from tests.browser.conftest import assert_accessible
from tests.factories import UserFactory

RATES = {"NOT_LICENSED": 0.25}
HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"


def inventory(fixes: dict[str, str] | None = None) -> str:
    fixes = fixes or {}
    return HEADER + "".join(
        f"staff{n}@y03.nhs.uk,Staff {n},user,{(n + 1) * 1_000_000},{100 + n},,{fixes.get(f'staff{n}@y03.nhs.uk', '')}\n"
        for n in range(8)
    )


def licensed_upn(mailbox: Mailbox) -> str:
    """The UPN of the account the trust licensed in Microsoft 365 (one the simulated target accepts)."""
    engine = SimulatedEngine(instant=True, preflight_rates=RATES)
    for n in range(100):
        upn = f"staff.{mailbox.pk}.{n}@nhs.net"
        spec = MailboxSpec(
            mailbox.email,
            EndpointSpec("simulated"),
            EndpointSpec("simulated"),
            target_user=upn,
            seed=mailbox.pk,
        )
        if engine.preflight(spec).ok:
            return upn
    raise AssertionError("no UPN passes")


def upload(page, text: str, name: str) -> None:
    page.get_by_role("button", name="Upload inventory").click()
    page.set_input_files(
        "input[type=file][name=file]", files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode()}]
    )
    page.get_by_role("button", name="Upload and import").click()


@pytest.mark.django_db(transaction=True)
def test_a_new_trust_gets_from_enrolment_to_a_finished_wave(browser_pages, real_broker, settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True, "preflight_rates": RATES}}
    admin = UserFactory(username="new.trust", role="trust_admin")
    officer = UserFactory(username="planner", role="programme_office")
    approver = UserFactory(username="approver", role="programme_office")
    trust = browser_pages(admin)

    # enrol
    trust.get_by_role("link", name="Organisations").first.click()
    trust.get_by_role("link", name="Enrol an organisation").click()
    trust.fill("#ods_code", "Y03")
    trust.fill("#name", "Hillside Health Centre")
    trust.select_option("#kind", "gp_practice")
    trust.select_option("#region", "london")
    trust.fill("#primary_name", "Ana Silva")
    trust.fill("#primary_email", "ana.silva@nhs.net")
    for box in trust.locator("input[name=gates]").all():
        box.check()
    trust.get_by_role("button", name="Enrol organisation").click()
    trust.wait_for_url(re.compile(r"/organisations/Y03/$"))

    # upload the inventory: the organisation is in readiness, nothing checked yet
    upload(trust, inventory(), "y03.csv")
    trust.get_by_text("Imported: 8 added").wait_for()
    trust.goto("/organisations/Y03/")
    assert "Readiness" in trust.locator("dl").first.inner_text()
    assert "Not checked yet" in trust.locator("#readiness-check").inner_text()

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # run the readiness check: the page shows its progress, then its results, by itself
        trust.get_by_role("button", name="Run the readiness check").click()
        trust.locator("#readiness-check", has_text="Last checked").wait_for(timeout=30_000)
    blocked = list(Mailbox.objects.filter(state="blocked").order_by("id"))
    ready = Mailbox.objects.filter(state="ready").count()
    assert blocked and ready + len(blocked) == 8
    summary = trust.locator("#readiness-check").inner_text()
    assert f"{ready} ready, {len(blocked)} blocked" in summary
    reasons = trust.locator("#blocked-by-reason").inner_text()
    assert (
        "No Exchange Online licence" in reasons and "assign one in the Microsoft 365 admin centre" in reasons
    )
    assert blocked[0].email in trust.locator("#blocked-mailboxes").inner_text()
    assert_accessible(trust)

    # the mailbox's own page says why and what to do
    trust.get_by_role("link", name=blocked[0].email).first.click()
    assert "Blocked: No Exchange Online licence" in trust.content()
    trust.go_back()

    # fix one: the trust licenses the account and corrects its target UPN in the inventory, then checks again
    upload(trust, inventory({blocked[0].email: licensed_upn(blocked[0])}), "y03-fixed.csv")
    trust.get_by_text("1 updated").first.wait_for()
    trust.goto("/organisations/Y03/")
    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        trust.get_by_role("button", name="Check again").click()
        trust.locator("#readiness-check", has_text=f"{ready + 1} ready").wait_for(timeout=30_000)
    blocked[0].refresh_from_db()
    assert blocked[0].state == "ready"

    # the organisation is offered to the planner: its ready mailboxes placed, the rest listed with why
    office = browser_pages(officer)
    office.goto("/waves/planner/")
    office.get_by_role("button", name="Preview the plan").click()
    office.get_by_role("heading", name=re.compile("Preview from")).wait_for()
    assert f"{ready + 1}" in office.locator("dl").first.inner_text()  # mailboxes placed
    if len(blocked) > 1:
        left = office.locator("#left-out-table").inner_text()
        assert "Y03" in left and f"{len(blocked) - 1} blocked: No Exchange Online licence" in left
    office.get_by_role("button", name=re.compile(r"Save these 1 draft waves")).click()
    office.wait_for_url(re.compile(r"/waves/$"))
    wave = Wave.objects.get()
    office.goto(f"/waves/{wave.pk}/")
    office.get_by_role("link", name="Propose for approval").click()
    office.get_by_role("button", name="Yes, propose for approval").click()
    office.locator("#wave-panel").get_by_text("Proposed").first.wait_for()

    # the trust says go; a second person approves
    trust.goto(f"/waves/{wave.pk}/")
    trust.get_by_role("button", name="Go for Y03").click()
    trust.locator("#wave-panel .nhsuk-tag", has_text="Go").first.wait_for()
    approving = browser_pages(approver)
    approving.goto(f"/waves/{wave.pk}/")
    approving.get_by_role("button", name="Approve").click()
    approving.wait_for_selector('#wave-live[data-live="yes"]')
    assert Organisation.objects.get(ods_code="Y03").stage == "sync_switch"

    # the evening comes: the window opens, a real worker moves the mailboxes, the page follows
    now = timezone.now()
    Wave.objects.filter(pk=wave.pk).update(
        starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=6)
    )
    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert wave_tick()["started"] == 1
        approving.wait_for_selector('#wave-live[data-live="no"]', timeout=60_000)
    assert (
        f"{ready + 1} of {ready + 1} mailboxes moved (100%)" in approving.locator("#wave-live").inner_text()
    )
    assert Mailbox.objects.filter(state="migrated").count() == ready + 1
