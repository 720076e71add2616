"""migrations_app/auth_backends.py: the signed-in user and a trust admin's organisations kept a moment in the
shared cache, and forgotten the moment they change."""

import time

import pytest
from django.core.cache import cache

from migrations_app.models import User
from tests.factories import OrganisationFactory, UserFactory


@pytest.fixture(autouse=True)
def kept(settings):
    settings.AUTH_USER_CACHE_SECONDS = 2
    cache.clear()
    yield
    cache.clear()


def org_page(client, organisation):
    return client.get(f"/organisations/{organisation.ods_code}/")


def test_a_polling_trust_admin_costs_no_query_at_all(
    settings, client_for, admin_a, org_a, django_assert_num_queries
):
    """The live wave page's poll, the request thousands of trust admins send every 3 s: the session, the user,
    their organisations and the answer all come from the cache."""
    from tests.status_fixtures import wave_in_states

    settings.WAVE_LIVE_CACHE_SECONDS = 1
    wave = wave_in_states([org_a], {"migrated": 1, "syncing": 1})
    client = client_for(admin_a)
    headers = {"HX-Request": "true"}
    first = client.get(f"/waves/{wave.pk}/live/", headers=headers)
    assert first.status_code == 200
    with django_assert_num_queries(0):
        again = client.get(f"/waves/{wave.pk}/live/", headers={**headers, "If-None-Match": first["ETag"]})
    assert again.status_code == 304


TAKE_AWAY = {
    # another instance of the user, as another request would hold
    "from the user's side": lambda user, org: User.objects.get(pk=user.pk).organisations.remove(org),
    "from the organisation's side": lambda user, org: org.admins.remove(user),
    "by clearing the organisation's admins": lambda user, org: org.admins.clear(),
}


@pytest.mark.parametrize("take_away", TAKE_AWAY.values(), ids=TAKE_AWAY.keys())
def test_taking_an_organisation_away_shows_on_the_next_request(client_for, admin_a, org_a, take_away):
    client = client_for(admin_a)
    assert org_page(client, org_a).status_code == 200
    take_away(admin_a, org_a)
    assert org_page(client, org_a).status_code == 404


def test_an_organisation_given_shows_on_the_next_request(client_for, admin_a, org_b):
    client = client_for(admin_a)
    assert org_page(client, org_b).status_code == 404
    org_b.admins.add(admin_a)
    assert org_page(client, org_b).status_code == 200


def test_a_deactivated_user_is_signed_out_at_once(client_for, admin_a):
    client = client_for(admin_a)
    assert client.get("/dashboard/").status_code == 200
    user = User.objects.get(pk=admin_a.pk)
    user.is_active = False
    user.save()
    response = client.get("/dashboard/")
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


def test_a_changed_password_signs_other_sessions_out(client_for, admin_a):
    client = client_for(admin_a)
    assert client.get("/dashboard/").status_code == 200
    user = User.objects.get(pk=admin_a.pk)
    user.set_password("another long passphrase 42")
    user.save()
    assert client.get("/dashboard/").status_code == 302


def test_a_change_behind_the_models_back_shows_within_the_period(settings, client_for, admin_a, org_a):
    settings.AUTH_USER_CACHE_SECONDS = 1
    client = client_for(admin_a)
    assert org_page(client, org_a).status_code == 200
    User.objects.filter(pk=admin_a.pk).update(is_active=False)  # a bulk UPDATE: no signal
    time.sleep(1.1)
    assert client.get("/dashboard/").status_code == 302


def test_users_never_see_each_others_kept_organisations(client, admin_a, admin_b, org_a, org_b):
    client.force_login(admin_a)
    assert org_page(client, org_a).status_code == 200
    client.force_login(admin_b)
    assert org_page(client, org_a).status_code == 404
    assert org_page(client, org_b).status_code == 200


def test_off_it_reads_the_user_every_time(settings, client_for, admin_a):
    settings.AUTH_USER_CACHE_SECONDS = 0
    client = client_for(admin_a)
    client.get("/dashboard/")
    User.objects.filter(pk=admin_a.pk).update(is_active=False)
    assert client.get("/dashboard/").status_code == 302


def test_a_new_trust_admin_gets_their_organisation_from_the_start(client, db):
    organisation = OrganisationFactory(ods_code="RX9")
    user = UserFactory(username="new_admin", role="trust_admin")
    client.force_login(user)
    assert org_page(client, organisation).status_code == 404
    user.organisations.add(organisation)
    assert org_page(client, organisation).status_code == 200
