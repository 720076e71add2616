"""Editing an organisation: gates, contacts, blackouts, window; priority for the programme office only."""

import datetime

from django.utils import timezone

from migrations_app.models import BlackoutPeriod, Contact, Event, Organisation


def edit_data(**overrides) -> dict:
    data = {
        "gates": ["gate_mfa_enforced", "gate_licences_assigned"],
        "primary_name": "Ana Silva",
        "primary_email": "ana.silva@nhs.net",
        "primary_phone": "",
        "technical_name": "",
        "technical_email": "",
        "technical_phone": "",
        "preferred_window": "evening",
        "notes": "Switchboard moves in May",
        "blackouts-TOTAL_FORMS": "2",
        "blackouts-INITIAL_FORMS": "0",
        "blackouts-MIN_NUM_FORMS": "0",
        "blackouts-MAX_NUM_FORMS": "20",
    }
    data.update(overrides)
    return data


def blackout_fields(index: int, starts: datetime.date, ends: datetime.date, reason: str = "") -> dict:
    prefix = f"blackouts-{index}"
    return {
        f"{prefix}-starts_on_day": str(starts.day),
        f"{prefix}-starts_on_month": str(starts.month),
        f"{prefix}-starts_on_year": str(starts.year),
        f"{prefix}-ends_on_day": str(ends.day),
        f"{prefix}-ends_on_month": str(ends.month),
        f"{prefix}-ends_on_year": str(ends.year),
        f"{prefix}-reason": reason,
    }


def test_a_trust_admin_updates_their_organisation(client_for, admin_a, org_a):
    Organisation.objects.filter(pk=org_a.pk).update(  # none met yet: the form meets two and not the others
        gate_mfa_enforced=False, gate_acceptable_use=False, gate_licences_assigned=False
    )
    Contact.objects.create(organisation=org_a, role="technical", name="Old Tech", email="old@nhs.net")
    soon = timezone.localdate() + datetime.timedelta(days=30)
    data = edit_data(**blackout_fields(0, soon, soon + datetime.timedelta(days=2), "Audit"))
    response = client_for(admin_a).post("/organisations/RJ1/edit/", data)
    assert response.status_code == 302 and response["Location"] == "/organisations/RJ1/"
    org_a.refresh_from_db()
    assert org_a.gate_mfa_enforced and org_a.gate_licences_assigned and not org_a.gate_acceptable_use
    assert org_a.preferred_window == "evening" and org_a.notes == "Switchboard moves in May"
    assert Contact.objects.get(organisation=org_a, role="primary").email == "ana.silva@nhs.net"
    assert not Contact.objects.filter(organisation=org_a, role="technical").exists()  # cleared
    assert BlackoutPeriod.objects.get(organisation=org_a).reason == "Audit"
    event = Event.objects.get(action="organisation.updated")
    assert set(event.data["changed"]) >= {
        "gate_mfa_enforced",
        "gate_licences_assigned",
        "preferred_window",
        "notes",
        "primary_contact",
        "technical_contact",
        "blackouts",
    }
    assert event.actor == admin_a


def test_the_form_is_filled_with_the_current_values(client_for, admin_a, org_a):
    Contact.objects.create(organisation=org_a, role="primary", name="Ana Silva", email="ana@nhs.net")
    BlackoutPeriod.objects.create(
        organisation=org_a, starts_on=datetime.date(2020, 12, 20), ends_on=datetime.date(2021, 1, 3)
    )
    html = client_for(admin_a).get("/organisations/RJ1/edit/").content.decode()
    assert 'value="ana@nhs.net"' in html
    assert 'name="blackouts-0-starts_on_year" type="text" value="2020"' in html


def test_an_existing_past_blackout_may_stay(client_for, admin_a, org_a):
    past = (datetime.date(2020, 12, 20), datetime.date(2021, 1, 3))
    BlackoutPeriod.objects.create(organisation=org_a, starts_on=past[0], ends_on=past[1], reason="Winter")
    data = edit_data(**{"blackouts-TOTAL_FORMS": "3", **blackout_fields(0, *past, "Winter")})
    response = client_for(admin_a).post("/organisations/RJ1/edit/", data)
    assert response.status_code == 302
    assert BlackoutPeriod.objects.filter(organisation=org_a, starts_on=past[0]).exists()


def test_a_new_past_blackout_is_refused(client_for, admin_a, org_a):
    data = edit_data(**blackout_fields(0, datetime.date(2020, 1, 1), datetime.date(2020, 1, 2)))
    response = client_for(admin_a).post("/organisations/RJ1/edit/", data)
    assert response.status_code == 400
    assert "A new blackout period cannot be in the past" in response.content.decode()


def test_a_bad_email_is_shown(client_for, admin_a, org_a):
    response = client_for(admin_a).post("/organisations/RJ1/edit/", edit_data(primary_email="ana@"))
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter an email address in the correct format" in html and 'href="#primary_email"' in html


def test_nothing_changed_records_no_event(client_for, admin_a, org_a):
    client = client_for(admin_a)
    client.post("/organisations/RJ1/edit/", edit_data())
    Event.objects.all().count()
    before = Event.objects.filter(action="organisation.updated").count()
    client.post("/organisations/RJ1/edit/", edit_data())
    assert Event.objects.filter(action="organisation.updated").count() == before


def test_only_the_programme_office_sets_priority(client_for, officer, admin_a, org_a):
    html = client_for(admin_a).get("/organisations/RJ1/edit/").content.decode()
    assert 'name="priority"' not in html
    client_for(admin_a).post("/organisations/RJ1/edit/", edit_data(priority="1"))  # ignored: not on the form
    org_a.refresh_from_db()
    assert org_a.priority == 100

    client = client_for(officer)
    assert 'name="priority"' in client.get("/organisations/RJ1/edit/").content.decode()
    response = client.post("/organisations/RJ1/edit/", edit_data(priority="5"))
    assert response.status_code == 302
    org_a.refresh_from_db()
    assert org_a.priority == 5
    html = client.post("/organisations/RJ1/edit/", edit_data(priority="first")).content.decode()
    assert "Enter the priority as a whole number" in html


def test_another_trust_admin_gets_404(client_for, admin_b, org_a):
    client = client_for(admin_b)
    assert client.get("/organisations/RJ1/edit/").status_code == 404
    assert client.post("/organisations/RJ1/edit/", edit_data()).status_code == 404
    org_a.refresh_from_db()
    assert org_a.preferred_window == "any"


def test_a_viewer_cannot_edit(client_for, viewer, org_a):
    client = client_for(viewer)
    assert client.get("/organisations/RJ1/edit/").status_code == 403
    assert client.post("/organisations/RJ1/edit/", edit_data()).status_code == 403
    assert not Event.objects.exists()


def test_anonymous_is_sent_to_sign_in(client, org_a):
    response = client.post("/organisations/RJ1/edit/", edit_data())
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


def test_the_403_page_says_why(client_for, viewer, org_a):
    response = client_for(viewer).get("/organisations/RJ1/edit/")
    assert response.status_code == 403
    assert "You do not administer RJ1" in response.content.decode()
