"""One place decides what each role sees and changes; these tests pin every boundary of it."""

import pytest
from django.core.exceptions import PermissionDenied

from migrations_app.models import Event, User
from migrations_app.selectors import scoping
from tests.factories import MailboxFactory, UserFactory


@pytest.fixture
def mailboxes(org_a, org_b):
    return MailboxFactory(organisation=org_a), MailboxFactory(organisation=org_b)


def test_a_trust_admin_sees_only_their_organisations(admin_a, org_a, org_b):
    assert list(scoping.organisations_visible_to(admin_a)) == [org_a]


def test_a_trust_admin_of_several_organisations_sees_each_of_them(admin_a, org_a, org_b):
    admin_a.organisations.add(org_b)
    assert set(scoping.organisations_visible_to(admin_a)) == {org_a, org_b}


def test_a_trust_admin_sees_only_their_mailboxes(admin_a, mailboxes):
    mine, theirs = mailboxes
    assert list(scoping.mailboxes_visible_to(admin_a)) == [mine]


def test_a_trust_admin_sees_only_their_events(admin_a, org_a, org_b):
    Event.objects.create(action="x", organisation=org_a)
    Event.objects.create(action="x", organisation=org_b)
    Event.objects.create(action="programme.wide")
    assert [e.organisation_id for e in scoping.events_visible_to(admin_a)] == [org_a.pk]


def test_the_programme_office_and_viewers_see_everything(officer, viewer, org_a, org_b, mailboxes):
    for user in (officer, viewer):
        assert set(scoping.organisations_visible_to(user)) == {org_a, org_b}
        assert scoping.mailboxes_visible_to(user).count() == 2


def test_only_the_programme_office_and_the_organisations_admins_may_change_it(
    officer, admin_a, admin_b, viewer, org_a
):
    assert scoping.can_administer(officer, org_a)
    assert scoping.can_administer(admin_a, org_a)
    assert not scoping.can_administer(admin_b, org_a)
    assert not scoping.can_administer(viewer, org_a)
    assert list(scoping.organisations_administered_by(viewer)) == []


def test_require_administer_refuses_another_organisations_admin(admin_b, org_a):
    with pytest.raises(PermissionDenied):
        scoping.require_administer(admin_b, org_a)


def test_require_programme_office_refuses_everyone_else(admin_a, viewer):
    for user in (admin_a, viewer):
        with pytest.raises(PermissionDenied):
            scoping.require_programme_office(user)


def test_a_deactivated_account_sees_nothing(org_a, db):
    user = UserFactory(role=User.Role.PROGRAMME_OFFICE, is_active=False)
    assert not scoping.organisations_visible_to(user).exists()
    assert not scoping.can_administer(user, org_a)


def test_an_anonymous_visitor_sees_nothing(org_a):
    from django.contrib.auth.models import AnonymousUser

    assert not scoping.organisations_visible_to(AnonymousUser()).exists()
    assert not scoping.mailboxes_visible_to(AnonymousUser()).exists()
