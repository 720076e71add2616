"""The organisation list: scoped, filtered, paginated 50 a page, mailbox counts from one GROUP BY."""

import re

from django.db import connection
from django.test.utils import CaptureQueriesContext

from migrations_app.models import Organisation
from tests.factories import MailboxFactory, OrganisationFactory


def test_the_programme_office_sees_every_organisation(client_for, officer, org_a, org_b):
    html = client_for(officer).get("/organisations/").content.decode()
    assert "RJ1" in html and "RRV" in html


def test_a_trust_admin_sees_only_their_own(client_for, admin_a, org_a, org_b):
    html = client_for(admin_a).get("/organisations/").content.decode()
    assert "RJ1" in html
    assert "RRV" not in html
    assert org_b.name not in html


def test_a_viewer_sees_all_but_no_enrol_button(client_for, viewer, org_a, org_b):
    html = client_for(viewer).get("/organisations/").content.decode()
    assert "RJ1" in html and "RRV" in html
    assert "/organisations/enrol/" not in html
    assert "/organisations/invite/" not in html


def test_only_the_programme_office_gets_the_invite_button(client_for, officer, admin_a):
    assert "/organisations/invite/" in client_for(officer).get("/organisations/").content.decode()
    html = client_for(admin_a).get("/organisations/").content.decode()
    assert "/organisations/enrol/" in html
    assert "/organisations/invite/" not in html


def test_it_filters_by_status_and_region(client_for, officer, db):
    OrganisationFactory(ods_code="A81001", status=Organisation.Status.INVITED, region="north_west")
    OrganisationFactory(ods_code="A81002", status=Organisation.Status.ENROLLED, region="north_west")
    OrganisationFactory(ods_code="A81003", status=Organisation.Status.INVITED, region="london")
    html = client_for(officer).get("/organisations/?status=invited&region=north_west").content.decode()
    assert "A81001" in html
    assert "A81002" not in html and "A81003" not in html


def test_it_searches_by_ods_code_or_name_prefix(client_for, officer, db):
    OrganisationFactory(ods_code="RH802", name="Royal Devon site")
    OrganisationFactory(ods_code="A81001", name="Riverside Surgery")
    OrganisationFactory(ods_code="B82001", name="The Health Centre")
    client = client_for(officer)
    html = client.get("/organisations/?q=rh8").content.decode()
    assert "RH802" in html and "A81001" not in html
    html = client.get("/organisations/?q=rivers").content.decode()
    assert "A81001" in html and "RH802" not in html and "B82001" not in html
    html = client.get("/organisations/?q=health").content.decode()  # a prefix, not a substring
    assert "B82001" not in html


def test_it_pages_fifty_at_a_time_with_the_nhs_pagination(client_for, officer, db):
    Organisation.objects.bulk_create(
        Organisation(ods_code=f"P{n:04d}", name=f"Practice {n}", region="london", kind="gp_practice")
        for n in range(120)
    )
    client = client_for(officer)
    html = client.get("/organisations/?region=london").content.decode()
    assert len(re.findall(r'href="/organisations/P\d{4}/"', html)) == 50
    assert "nhsuk-pagination" in html
    assert "page=2" in html and "region=london" in html  # filters kept in the page links
    html = client.get("/organisations/?region=london&page=3").content.decode()
    assert len(re.findall(r'href="/organisations/P\d{4}/"', html)) == 20
    assert "Showing 101 to 120 of 120 organisations" in html


def test_it_counts_mailboxes_with_one_group_by_over_the_page_only(client_for, officer, org_a, org_b):
    MailboxFactory.create_batch(3, organisation=org_a)
    MailboxFactory(organisation=org_b)
    client = client_for(officer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/organisations/")
    mailbox_queries = [q["sql"] for q in queries if "migrations_app_mailbox" in q["sql"]]
    assert len(mailbox_queries) == 1
    assert "GROUP BY" in mailbox_queries[0]
    assert " IN (" in mailbox_queries[0]  # only the organisations on the page
    html = response.content.decode()
    assert re.search(r"RJ1.*?>\s*3\s*<", html, re.S)


def test_htmx_gets_just_the_results(client_for, officer, org_a):
    response = client_for(officer).get("/organisations/?q=RJ", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "RJ1" in html
    assert "<html" not in html


def _list_queries(client, path="/organisations/") -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_the_organisations(client_for, officer, admin_a, db):
    """37 organisations (the demo's) took 250 ms: the time was the table's rendering, the queries were few;
    both stay flat: the same queries for 3 organisations as for 60, each with parents and mailboxes."""
    parent = OrganisationFactory(ods_code="QP1", name="Parent trust")
    for n in range(2):
        MailboxFactory(organisation=OrganisationFactory(ods_code=f"QA{n}", name=f"Site {n}", parent=parent))
    client = client_for(officer)
    _list_queries(client)  # signed in: the user is kept from now on (auth_backends)
    few = _list_queries(client)
    for n in range(60):
        MailboxFactory(
            organisation=OrganisationFactory(ods_code=f"QB{n:02d}", name=f"More {n}", parent=parent)
        )
    assert _list_queries(client) == few
    assert _list_queries(client, "/organisations/?page=2") == few
    # a trust admin's own list, likewise
    admin_few = _list_queries(client_for(admin_a))
    admin_a.organisations.add(*Organisation.objects.filter(ods_code__startswith="QB")[:30])
    assert _list_queries(client_for(admin_a)) == admin_few


def test_each_row_shows_its_status_and_stage_as_tags(client_for, officer, org_a):
    html = client_for(officer).get("/organisations/").content.decode()
    row = html.split(f'href="/organisations/{org_a.ods_code}/"')[1].split("</tr>")[0]
    assert "nhsuk-tag--" in row and org_a.get_status_display() in row and org_a.get_stage_display() in row
    assert 'class="nhsuk-table__heading" aria-hidden="true">Mailboxes </span>' in row
