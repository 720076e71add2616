"""The live wave fragment under thousands of pollers: figures shared for a second between people who see the
same organisations (never between trusts), and an unchanged poll answered 304 without rendering."""

import time

import pytest
from django.core.cache import cache

from migrations_app.models import Mailbox
from tests.status_fixtures import wave_in_states

M = Mailbox.State


@pytest.fixture
def shared(settings):
    settings.WAVE_LIVE_CACHE_SECONDS = 1
    cache.clear()
    yield
    cache.clear()


def poll(client, wave, etag=None):
    headers = {"HX-Request": "true", **({"If-None-Match": etag} if etag else {})}
    return client.get(f"/waves/{wave.pk}/live/", headers=headers)


def test_an_unchanged_poll_is_answered_304_with_its_etag(shared, client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"migrated": 1, "syncing": 1})
    client = client_for(admin_a)
    first = poll(client, wave)
    assert first.status_code == 200 and "<strong>1</strong> of 2 mailboxes moved" in first.content.decode()
    assert first["Cache-Control"] == "private, no-cache" and first["ETag"]
    again = poll(client, wave, first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"] and again.content == b""


def test_a_change_shows_within_the_sharing_second(shared, client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"migrated": 1, "syncing": 1})
    client = client_for(admin_a)
    first = poll(client, wave)
    Mailbox.objects.filter(wave=wave, state=M.SYNCING).update(state=M.MIGRATED)
    time.sleep(1.1)  # no older than WAVE_LIVE_CACHE_SECONDS
    after = poll(client, wave, first["ETag"])
    assert after.status_code == 200 and after["ETag"] != first["ETag"]
    assert "<strong>2</strong> of 2 mailboxes moved" in after.content.decode()


def test_shared_figures_never_cross_from_one_trust_to_another(
    shared, client_for, admin_a, admin_b, org_a, org_b
):
    wave = wave_in_states([org_a, org_b], {"migrated": 1})
    Mailbox.objects.filter(wave=wave, organisation=org_b).update(
        state=M.FAILED, last_error_code="AUTH_FAILED"
    )
    ours = poll(client_for(admin_a), wave)  # cached for org_a's admins ...
    theirs = poll(client_for(admin_b), wave)  # ... not served to org_b's
    assert "<strong>1</strong> of 1 mailboxes moved" in ours.content.decode()
    assert "<strong>0</strong> of 1 mailboxes moved" in theirs.content.decode()
    assert "AUTH_FAILED" in theirs.content.decode() and "AUTH_FAILED" not in ours.content.decode()
    assert ours["ETag"] != theirs["ETag"]


def test_the_programme_offices_retry_buttons_change_the_etag(shared, client_for, officer, viewer, org_a):
    wave = wave_in_states([org_a], {"failed": 1})
    office = poll(client_for(officer), wave)
    assert "Retry these" in office.content.decode()
    seen = poll(client_for(viewer), wave, office["ETag"])  # same figures, no buttons: not the same answer
    assert seen.status_code == 200 and "Retry these" not in seen.content.decode()


def test_a_finished_wave_still_stops_the_polling(shared, client_for, officer, org_a):
    from migrations_app.models import Wave

    wave = wave_in_states([org_a], {"migrated": 1})
    client = client_for(officer)
    first = poll(client, wave)
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.COMPLETED)
    wave.refresh_from_db()
    assert poll(client, wave, first["ETag"]).status_code == 286


def test_admins_who_see_the_same_organisations_share_one_answer(
    shared, client_for, admin_a, org_a, org_b, django_assert_max_num_queries
):
    """The whole answer is shared: a colleague's poll within the second costs their sign-in and their
    organisations, not the wave; someone who sees other organisations never gets it."""
    from tests.factories import UserFactory

    wave = wave_in_states([org_a], {"migrated": 1, "syncing": 1})
    colleague = UserFactory(username="colleague_a", role="trust_admin")
    colleague.organisations.add(org_a)
    first = poll(client_for(admin_a), wave)
    client = client_for(colleague)
    with django_assert_max_num_queries(
        2
    ):  # at most the user and their organisations (auth_backends keeps both)
        again = poll(client, wave, first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    with django_assert_max_num_queries(2):
        whole = poll(client, wave)
    assert whole.status_code == 200 and whole.content == first.content

    stranger = UserFactory(username="admin_of_b_only", role="trust_admin")
    stranger.organisations.add(org_b)
    assert poll(client_for(stranger), wave, first["ETag"]).status_code == 404
