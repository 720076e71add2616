"""Enrolment: a trust admin (or the programme office) enrols an organisation and becomes its admin."""

import datetime

import pytest
from django.utils import timezone

from migrations_app.models import BlackoutPeriod, Contact, Event, Organisation
from tests.factories import OrganisationFactory, UserFactory


def enrol_data(**overrides) -> dict:
    next_year = timezone.localdate().year + 1
    data = {
        "ods_code": "rh802",
        "name": "Royal Devon Wonford site",
        "kind": "trust_site",
        "parent_ods_code": "",
        "region": "south_west",
        "primary_name": "Ana Silva",
        "primary_email": "ana.silva@nhs.net",
        "primary_phone": "01392 000000",
        "technical_name": "Tom Reed",
        "technical_email": "tom.reed@nhs.net",
        "technical_phone": "",
        "preferred_window": "weekend",
        "gates": ["gate_mfa_enforced", "gate_acceptable_use"],
        "notes": "",
        "blackouts-TOTAL_FORMS": "2",
        "blackouts-INITIAL_FORMS": "0",
        "blackouts-MIN_NUM_FORMS": "0",
        "blackouts-MAX_NUM_FORMS": "20",
        "blackouts-0-starts_on_day": "1",
        "blackouts-0-starts_on_month": "3",
        "blackouts-0-starts_on_year": str(next_year),
        "blackouts-0-ends_on_day": "14",
        "blackouts-0-ends_on_month": "3",
        "blackouts-0-ends_on_year": str(next_year),
        "blackouts-0-reason": "EPR go-live",
    }
    data.update(overrides)
    return data


def test_a_trust_admin_enrols_and_becomes_its_admin(client_for, admin_a, org_a):
    response = client_for(admin_a).post("/organisations/enrol/", enrol_data(parent_ods_code="rj1"))
    assert response.status_code == 302
    assert response["Location"] == "/organisations/RH802/"
    org = Organisation.objects.get(ods_code="RH802")  # upper-cased
    assert org.status == Organisation.Status.ENROLLED and org.enrolled_at
    assert org.parent == org_a
    assert org.kind == "trust_site" and org.region == "south_west" and org.preferred_window == "weekend"
    assert org.gate_mfa_enforced and org.gate_acceptable_use and not org.gate_licences_assigned
    assert admin_a.organisations.filter(pk=org.pk).exists()
    contacts = {c.role: c for c in Contact.objects.filter(organisation=org)}
    assert contacts["primary"].email == "ana.silva@nhs.net"
    assert contacts["technical"].name == "Tom Reed"
    blackout = BlackoutPeriod.objects.get(organisation=org)
    assert blackout.reason == "EPR go-live" and blackout.ends_on - blackout.starts_on == datetime.timedelta(
        days=13
    )
    event = Event.objects.get(action="organisation.enrolled")
    assert event.organisation_id == org.pk and event.actor_id == admin_a.pk and event.to_state == "enrolled"


def test_the_new_organisation_then_shows_on_the_admins_list(client_for, admin_a):
    client = client_for(admin_a)
    client.post("/organisations/enrol/", enrol_data())
    assert "RH802" in client.get("/organisations/").content.decode()


def test_the_programme_office_can_enrol(client_for, officer):
    response = client_for(officer).post("/organisations/enrol/", enrol_data())
    assert response.status_code == 302
    assert Organisation.objects.filter(ods_code="RH802", status="enrolled").exists()


@pytest.mark.parametrize("code", ["RJ-1", "ABCDEFGHIJ", "R J 1!"])
def test_it_refuses_a_malformed_ods_code(client_for, admin_a, code):
    response = client_for(admin_a).post("/organisations/enrol/", enrol_data(ods_code=code))
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter an ODS code of 1 to 9 letters and digits, like RJ1 or A81001" in html
    assert 'href="#ods_code"' in html  # the error summary links to the field
    assert (
        not Organisation.objects.exists()
        or not Organisation.objects.filter(name__startswith="Royal").exists()
    )


def test_it_refuses_a_duplicate_ods_code_clearly(client_for, admin_b, org_a):
    response = client_for(admin_b).post("/organisations/enrol/", enrol_data(ods_code="RJ1"))
    assert response.status_code == 400
    html = response.content.decode()
    assert "RJ1 is already enrolled" in html and "ask the programme office" in html
    assert not admin_b.organisations.filter(pk=org_a.pk).exists()
    assert Organisation.objects.get(pk=org_a.pk).name == org_a.name  # untouched


def test_the_admin_of_an_enrolled_organisation_cannot_enrol_it_again(client_for, admin_a, org_a):
    response = client_for(admin_a).post("/organisations/enrol/", enrol_data(ods_code="RJ1"))
    assert response.status_code == 400
    assert "RJ1 is already enrolled" in response.content.decode()


def test_the_parent_must_exist_and_not_be_itself(client_for, admin_a):
    client = client_for(admin_a)
    html = client.post("/organisations/enrol/", enrol_data(parent_ods_code="ZZZ9")).content.decode()
    assert "There is no organisation with ODS code ZZZ9 in the portal" in html
    html = client.post("/organisations/enrol/", enrol_data(parent_ods_code="rh802")).content.decode()
    assert "An organisation cannot be its own parent" in html


def test_it_shows_every_missing_field(client_for, admin_a):
    response = client_for(admin_a).post(
        "/organisations/enrol/",
        enrol_data(name="", kind="", region="", primary_name="", primary_email="not-an-email"),
    )
    html = response.content.decode()
    for message in [
        "Enter the organisation&#39;s name",
        "Select the type of organisation",
        "Select the region",
        "Enter the primary contact&#39;s name",
        "Enter an email address in the correct format, like name@example.nhs.uk",
    ]:
        assert message in html


def test_a_technical_contact_needs_an_email(client_for, admin_a):
    html = client_for(admin_a).post("/organisations/enrol/", enrol_data(technical_email="")).content.decode()
    assert "Enter the technical contact&#39;s email address" in html


def test_a_blackout_cannot_end_before_it_starts(client_for, admin_a):
    year = str(timezone.localdate().year + 1)
    data = enrol_data(
        **{"blackouts-0-ends_on_day": "1", "blackouts-0-ends_on_month": "2", "blackouts-0-ends_on_year": year}
    )
    response = client_for(admin_a).post("/organisations/enrol/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "The end date must be the same as or after the start date" in html
    assert 'href="#blackouts-0-ends_on-day"' in html


def test_blackouts_cannot_overlap(client_for, admin_a):
    year = str(timezone.localdate().year + 1)
    data = enrol_data(
        **{
            "blackouts-1-starts_on_day": "10",
            "blackouts-1-starts_on_month": "3",
            "blackouts-1-starts_on_year": year,
            "blackouts-1-ends_on_day": "20",
            "blackouts-1-ends_on_month": "3",
            "blackouts-1-ends_on_year": year,
        }
    )
    html = client_for(admin_a).post("/organisations/enrol/", data).content.decode()
    assert "This period overlaps the one from 1 March" in html
    assert not Organisation.objects.filter(ods_code="RH802").exists()


def test_a_new_blackout_cannot_be_in_the_past(client_for, admin_a):
    year = str(timezone.localdate().year - 1)
    data = enrol_data(**{"blackouts-0-starts_on_year": year, "blackouts-0-ends_on_year": year})
    html = client_for(admin_a).post("/organisations/enrol/", data).content.decode()
    assert "A new blackout period cannot be in the past" in html


def test_a_blackout_date_must_be_real(client_for, admin_a):
    html = (
        client_for(admin_a)
        .post("/organisations/enrol/", enrol_data(**{"blackouts-0-starts_on_month": "13"}))
        .content.decode()
    )
    assert "The start date must be a real date" in html


def test_the_enrol_page_uses_the_nhs_components(client_for, admin_a):
    html = client_for(admin_a).get("/organisations/enrol/").content.decode()
    assert "nhsuk-date-input" in html and "nhsuk-checkboxes" in html and "nhsuk-radios" in html
    assert "Multi-factor sign-in enforced" in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_a_viewer_cannot_enrol(client_for, viewer):
    client = client_for(viewer)
    assert client.get("/organisations/enrol/").status_code == 403
    assert client.post("/organisations/enrol/", enrol_data()).status_code == 403
    assert not Organisation.objects.exists()


def test_anonymous_cannot_enrol(client, db):
    response = client.post("/organisations/enrol/", enrol_data())
    assert response.status_code == 302 and "/sign-in/" in response["Location"]
    assert not Organisation.objects.exists()


# --- completing a pre-created organisation ---------------------------------------------------------------


@pytest.fixture
def invited_org(db):
    return OrganisationFactory(
        ods_code="RH802", name="Wonford (pre-created)", status=Organisation.Status.INVITED
    )


def test_the_invited_admin_completes_a_pre_created_organisation(client_for, invited_org):
    user = UserFactory(username="newadmin", role="trust_admin")
    user.organisations.add(invited_org)
    client = client_for(user)
    html = client.get("/organisations/enrol/?ods_code=RH802").content.decode()
    assert 'value="Wonford (pre-created)"' in html  # prefilled
    response = client.post("/organisations/enrol/", enrol_data())
    assert response.status_code == 302
    invited_org.refresh_from_db()
    assert invited_org.status == Organisation.Status.ENROLLED
    assert invited_org.name == "Royal Devon Wonford site"
    assert Organisation.objects.filter(ods_code="RH802").count() == 1
    assert Event.objects.get(action="organisation.enrolled").from_state == "invited"


def test_another_trust_admin_cannot_complete_a_pre_created_organisation(client_for, admin_a, invited_org):
    client = client_for(admin_a)
    assert 'value="Wonford' not in client.get("/organisations/enrol/?ods_code=RH802").content.decode()
    response = client.post("/organisations/enrol/", enrol_data())
    assert response.status_code == 400
    assert "RH802 is already enrolled" in response.content.decode()
    invited_org.refresh_from_db()
    assert invited_org.status == Organisation.Status.INVITED


def test_a_blank_submission_shows_errors(client_for, admin_a):
    response = client_for(admin_a).post("/organisations/enrol/", {})
    assert response.status_code == 400
    assert "Enter an ODS code, like RJ1 or A81001" in response.content.decode()
