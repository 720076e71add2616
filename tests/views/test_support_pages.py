"""Support and the gate on the pages: the organisation page's hold and its buttons, the ticket upload and the
paragraph, the wave page's rate, the support list's scoping, the dashboard's programme rate."""

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from migrations_app.models import (
    Mailbox,
    Moment,
    Notification,
    OrganisationHold,
    OrganisationNotice,
    SupportRequest,
    Wave,
)
from migrations_app.services.gate import gate_evaluate
from migrations_app.services.notifications.scheduling import notifications_schedule
from migrations_app.services.support import support_request_submit
from tests.notify_fixtures import primary_contact, templates_on, wave_in


@pytest.fixture
def moved(db, org_a):
    wave, mailboxes = wave_in(
        org_a, starts_in=-dt.timedelta(days=1), mailboxes=10, status=Wave.Status.COMPLETED
    )
    Mailbox.objects.filter(wave=wave).update(state=Mailbox.State.MIGRATED)
    return wave, mailboxes


def upload(client, ods, text):
    file = SimpleUploadedFile("tickets.csv", text.encode(), content_type="text/csv")
    return client.post(f"/organisations/{ods}/tickets/", {"file": file}, follow=True)


def test_a_ticket_csv_upload_moves_the_rate(client_for, admin_a, moved):
    wave, (one, two, *_) = moved
    now = timezone.now().isoformat()
    csv = f"reference,address,opened_at,category\nINC1,{one.email},{now},sign_in\nINC2,{two.email},{now},phone\n"
    html = upload(client_for(admin_a), "RJ1", csv).content.decode()
    assert "Imported 2 new ticket(s)" in html
    assert "20.00%" in html  # the organisation page shows its rate
    html = upload(client_for(admin_a), "RJ1", csv).content.decode()
    assert "Imported 0 new ticket(s); 2 were already imported" in html
    assert "20.00%" in client_for(admin_a).get(f"/waves/{wave.pk}/").content.decode()


def test_a_bad_ticket_file_says_what_is_wrong_and_imports_nothing(client_for, admin_a, moved):
    html = upload(
        client_for(admin_a), "RJ1", "reference,address,opened_at,category\nINC1,x@y.nhs.uk,soon,sign_in\n"
    ).content.decode()
    assert "nothing was imported" in html and "line 1, address" in html
    assert not SupportRequest.objects.exists()


def test_another_trust_cannot_upload_or_see_requests(client_for, admin_b, moved):
    _, (one, *_) = moved
    support_request_submit(email=one.email, category="phone", description="help")
    assert upload(client_for(admin_b), "RJ1", "reference\n").status_code == 404
    assert one.email not in client_for(admin_b).get("/support/").content.decode()


def test_the_support_list_shows_the_organisations_requests(client_for, admin_a, officer, viewer, moved):
    _, (one, *_) = moved
    support_request_submit(email=one.email, category="phone", description="help")
    assert one.email in client_for(admin_a).get("/support/").content.decode()
    assert one.email in client_for(officer).get("/support/?organisation=RJ1").content.decode()
    assert one.email not in client_for(viewer).get("/support/").content.decode()


def test_the_hold_is_shown_to_both_sides_and_the_trust_gives_go(client_for, admin_a, officer, moved):
    _, mailboxes = moved
    for m in mailboxes[:5]:
        support_request_submit(email=m.email, category="sign_in", description="")
    gate_evaluate()
    trust_page = client_for(admin_a).get("/organisations/RJ1/").content.decode()
    assert "Next waves on hold" in trust_page and "50.00% of its moved mailboxes needed support" in trust_page
    assert "Give go for our next waves" in trust_page and "Override the hold" not in trust_page
    office_page = client_for(officer).get("/organisations/RJ1/").content.decode()
    assert "50.00% of its moved mailboxes" in office_page and "Override the hold" in office_page

    client_for(admin_a).post("/organisations/RJ1/hold/go/", {"reason": "More desk staff"})
    assert OrganisationHold.objects.get().release == "go"


def test_the_programme_office_overrides_with_a_reason(client_for, admin_a, officer, moved):
    _, mailboxes = moved
    for m in mailboxes[:5]:
        support_request_submit(email=m.email, category="sign_in", description="")
    gate_evaluate()
    html = (
        client_for(officer)
        .post("/organisations/RJ1/hold/override/", {"reason": ""}, follow=True)
        .content.decode()
    )
    assert "Give a reason" in html
    client_for(officer).post("/organisations/RJ1/hold/override/", {"reason": "Known password issue, fixed"})
    assert OrganisationHold.objects.get().release == "override"


def test_the_trust_sets_the_paragraph_for_its_staff(client_for, admin_a, admin_b, org_a):
    client_for(admin_a).post("/organisations/RJ1/notice/", {"paragraph": "Our desk: 0207 000 0000"})
    assert OrganisationNotice.objects.get(organisation=org_a).paragraph == "Our desk: 0207 000 0000"
    assert client_for(admin_b).post("/organisations/RJ1/notice/", {"paragraph": "x"}).status_code == 404


def test_the_dashboard_shows_the_programme_rate_against_the_goal(client_for, officer, moved):
    _, (one, *_) = moved
    support_request_submit(email=one.email, category="missing", description="")
    html = client_for(officer).get("/dashboard/").content.decode()
    assert "10.00% of moved mailboxes needed support" in html and "1.2%" in html


def test_a_bad_address_is_shown_on_the_mailbox_and_organisation_pages(client_for, admin_a, admin_b, org_a):
    from migrations_app.models import Notification

    wave, (mailbox,) = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=1)
    Notification.objects.create(
        mailbox=mailbox,
        organisation_id=org_a.pk,
        wave_id=wave.pk,
        moment="first",
        recipient=mailbox.email,
        window_starts_at=wave.starts_at,
        status="permanent-failure",
        created_at=timezone.now(),
    )
    org_page = client_for(admin_a).get("/organisations/RJ1/").content.decode()
    assert "Addresses to fix" in org_page and mailbox.email in org_page
    mailbox_page = client_for(admin_a).get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert "Bad address" in mailbox_page and "fix this address" in mailbox_page
    assert client_for(admin_b).get(f"/mailboxes/{mailbox.pk}/").status_code == 404


def test_the_digests_are_on_the_organisation_page_for_its_side_only(
    client_for, admin_a, admin_b, officer, org_a
):
    templates_on(Moment.FIRST, Moment.DIGEST)
    primary_contact(org_a, email="lead.rj1@example.nhs.uk")
    wave, _ = wave_in(org_a, starts_in=dt.timedelta(days=10), mailboxes=2)
    notifications_schedule()
    assert Notification.objects.filter(mailbox__isnull=True).count() == 1
    for user in (admin_a, officer):
        html = client_for(user).get("/organisations/RJ1/").content.decode()
        assert 'id="digests"' in html and "lead.rj1@example.nhs.uk" in html and wave.name in html
    other = client_for(admin_b)
    response = other.get("/organisations/RJ1/")
    assert response.status_code == 404
    assert "lead.rj1@example.nhs.uk" not in response.content.decode()
    own = other.get("/organisations/RRV/").content.decode()
    assert "lead.rj1@example.nhs.uk" not in own and 'id="no-digests"' in own
