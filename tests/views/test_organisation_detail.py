"""One organisation: details, gates, contacts, blackouts, mailbox counts by state, recent imports."""

import datetime

from django.db import connection
from django.test.utils import CaptureQueriesContext

from migrations_app.models import BlackoutPeriod, Contact, ImportJob, Mailbox
from migrations_app.services.webhooks import webhook_create
from tests.factories import MailboxFactory


def test_it_shows_the_details(client_for, admin_a, org_a):
    org_a.gate_mfa_enforced = True
    org_a.save()
    Contact.objects.create(organisation=org_a, role="primary", name="Ana Silva", email="ana@rj1.nhs.uk")
    BlackoutPeriod.objects.create(
        organisation=org_a,
        starts_on=datetime.date(2030, 1, 2),
        ends_on=datetime.date(2030, 1, 9),
        reason="EPR go-live",
    )
    html = client_for(admin_a).get("/organisations/RJ1/").content.decode()
    assert org_a.name.replace("'", "&#39;") in html
    assert "Multi-factor sign-in enforced" in html
    assert "nhsuk-tag--green" in html  # the met gate
    assert "ana@rj1.nhs.uk" in html
    assert "EPR go-live" in html and "2 January 2030" in html
    assert "Upload inventory" in html and "/organisations/RJ1/edit/" in html


def test_it_counts_mailboxes_by_state_from_the_counters(client_for, officer, org_a, org_b):
    MailboxFactory.create_batch(2, organisation=org_a, state=Mailbox.State.READY)
    MailboxFactory(organisation=org_a, state=Mailbox.State.FAILED)
    MailboxFactory(organisation=org_b, state=Mailbox.State.FAILED)
    client = client_for(officer)
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/organisations/RJ1/").content.decode()
    # mailbox rows are read for one page of the inventory only (LIMIT 51); every count is from the counters
    mailbox_queries = [q["sql"] for q in queries if '"migrations_app_mailbox"' in q["sql"]]
    assert len(mailbox_queries) == 1 and "LIMIT 51" in mailbox_queries[0]
    assert "Failed" in html
    assert "of 3 mailboxes moved" in html  # the total, org_b's mailbox not counted


def test_it_lists_recent_imports(client_for, admin_a, org_a):
    job = ImportJob.objects.create(organisation=org_a, filename="rj1-inventory.csv", status="succeeded")
    html = client_for(admin_a).get("/organisations/RJ1/").content.decode()
    assert "rj1-inventory.csv" in html and f"/imports/{job.pk}/" in html


def test_a_trust_admin_gets_404_for_another_organisation(client_for, admin_a, org_b):
    assert client_for(admin_a).get("/organisations/RRV/").status_code == 404


def test_a_viewer_sees_it_without_edit_or_upload_links(client_for, viewer, org_a):
    response = client_for(viewer).get("/organisations/RJ1/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/organisations/RJ1/edit/" not in html
    assert "/organisations/RJ1/imports/" not in html


def test_an_unknown_code_is_404(client_for, officer):
    assert client_for(officer).get("/organisations/NOPE1/").status_code == 404
    assert client_for(officer).get("/organisations/rj1/").status_code == 404  # codes are upper case


def test_anonymous_is_sent_to_sign_in(client, org_a):
    response = client.get("/organisations/RJ1/")
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


def test_it_lists_webhooks_to_those_who_administer_it_only(client_for, admin_a, viewer, org_a, settings):
    webhook_create(
        actor=admin_a,
        organisation=org_a,
        url="https://itsm.example.nhs.uk/portal-hook",
        secret="s" * 32,
        event_types=["mailbox."],
    )
    page = client_for(admin_a).get("/organisations/RJ1/").content.decode()
    assert "https://itsm.example.nhs.uk/portal-hook" in page and "mailbox." in page and "s" * 32 not in page
    assert "portal-hook" not in client_for(viewer).get("/organisations/RJ1/").content.decode()


def test_the_inventory_part_opened_directly_is_the_whole_page_with_its_filters(client_for, admin_a, org_a):
    client = client_for(admin_a)
    response = client.get("/organisations/RJ1/mailboxes/?state=ready")
    assert response.status_code == 302
    assert response["Location"] == "/organisations/RJ1/?state=ready#inventory-heading"
    fragment = client.get("/organisations/RJ1/mailboxes/?state=ready", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()


def test_the_403_page_does_not_send_the_programme_office_to_itself(client_for, officer, viewer, rf):
    from django.template.loader import render_to_string

    page = client_for(viewer).get("/organisations/enrol/").content.decode()
    assert "ask the programme office" in page
    request = rf.get("/")
    request.user = officer
    page = render_to_string("403.html", {"exception": "No"}, request=request)
    assert "ask the programme office" not in page and "check your role" in page
