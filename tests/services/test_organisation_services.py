"""The organisation services called directly, as the API and commands will: permissions and validation."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from migrations_app.models import Event, Invitation, Organisation
from migrations_app.services.organisations import (
    BlackoutData,
    ContactData,
    invitation_accept,
    organisation_enrol,
    organisation_precreate_and_invite,
    organisation_update,
)
from tests.factories import OrganisationFactory, UserFactory

PRIMARY = ContactData(name="Ana Silva", email="ana@nhs.net")


def enrol(actor, **overrides):
    kwargs = {
        "ods_code": "rh802",
        "name": "Wonford",
        "kind": "trust_site",
        "region": "south_west",
        "primary_contact": PRIMARY,
    }
    kwargs.update(overrides)
    return organisation_enrol(actor=actor, **kwargs)


def test_it_upper_cases_the_ods_code(admin_a):
    assert enrol(admin_a).ods_code == "RH802"


def test_a_viewer_cannot_enrol(viewer):
    with pytest.raises(PermissionDenied):
        enrol(viewer)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ods_code": "RJ-1"}, "ods_code"),
        ({"name": "  "}, "name"),
        ({"kind": "castle"}, "kind"),
        ({"region": "mars"}, "region"),
        ({"preferred_window": "never"}, "preferred_window"),
        ({"gates": ["gate_unicorns"]}, "gates"),
    ],
)
def test_it_names_the_field_in_error(admin_a, overrides, field):
    with pytest.raises(ValidationError) as error:
        enrol(admin_a, **overrides)
    assert field in error.value.error_dict
    assert not Organisation.objects.filter(ods_code="RH802").exists()


def test_overlapping_blackouts_are_refused(admin_a):
    day = datetime.date(2031, 1, 1)
    blackouts = [
        BlackoutData(day, day + datetime.timedelta(days=5)),
        BlackoutData(day + datetime.timedelta(days=5), day + datetime.timedelta(days=6)),
    ]
    with pytest.raises(ValidationError) as error:
        enrol(admin_a, blackouts=blackouts)
    assert "overlap" in str(error.value)


def test_a_parent_cannot_be_its_own_descendant(officer):
    trust = OrganisationFactory(ods_code="RH8", status=Organisation.Status.INVITED)
    OrganisationFactory(ods_code="RH801", parent=trust)
    site = Organisation.objects.get(ods_code="RH801")
    with pytest.raises(ValidationError) as error:
        enrol(officer, ods_code="RH8", parent=site)
    assert "parent" in error.value.error_dict


def test_only_the_programme_office_sets_priority(admin_a, officer, org_a):
    with pytest.raises(PermissionDenied):
        organisation_update(actor=admin_a, organisation=org_a, data={"priority": 1})
    organisation_update(actor=officer, organisation=org_a, data={"priority": 1})
    org_a.refresh_from_db()
    assert org_a.priority == 1
    assert Event.objects.get(action="organisation.updated").data == {"changed": ["priority"]}


def test_a_trust_admin_cannot_update_another_organisation(admin_a, org_b):
    with pytest.raises(PermissionDenied):
        organisation_update(actor=admin_a, organisation=org_b, data={"gate_mfa_enforced": True})


def test_update_refuses_fields_it_does_not_own(officer, org_a):
    with pytest.raises(ValueError, match="ods_code"):
        organisation_update(actor=officer, organisation=org_a, data={"ods_code": "X1"})


def test_invite_needs_the_programme_office(admin_a):
    with pytest.raises(PermissionDenied):
        organisation_precreate_and_invite(
            actor=admin_a,
            ods_code="A81001",
            name="Surgery",
            kind="gp_practice",
            region="london",
            invite_email="a@nhs.net",
        )


def test_the_raw_token_is_only_on_the_returned_object(officer):
    invitation = organisation_precreate_and_invite(
        actor=officer,
        ods_code="A81001",
        name="Surgery",
        kind="gp_practice",
        region="london",
        invite_email="a@nhs.net",
    )
    assert invitation.token and invitation.token not in Invitation.objects.get().token_hash
    user = UserFactory(username="new", role="viewer")
    organisation = invitation_accept(token=invitation.token, user=user)
    assert organisation.ods_code == "A81001"
    with pytest.raises(ValidationError, match="already been used"):
        invitation_accept(token=invitation.token, user=UserFactory(username="other"))


def test_an_expired_invitation_is_refused(officer):
    invitation = organisation_precreate_and_invite(
        actor=officer,
        ods_code="A81001",
        name="Surgery",
        kind="gp_practice",
        region="london",
        invite_email="a@nhs.net",
    )
    Invitation.objects.update(expires_at=timezone.now())
    with pytest.raises(ValidationError, match="expired"):
        invitation_accept(token=invitation.token, user=UserFactory(username="new"))
