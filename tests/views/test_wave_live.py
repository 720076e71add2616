"""The live wave page: progress, counts, bytes, window, failures by code with "retry these"; htmx polling that
stops (286) when the wave is done; the wave's CSV; scoping of all of it."""

from migrations_app.models import Event, Mailbox, Wave
from tests.status_fixtures import wave_in_states

M = Mailbox.State


def test_it_shows_live_progress_and_failures_by_code(client_for, officer, org_a):
    wave = wave_in_states(
        [org_a], {"migrated": 2, "syncing": 1, ("failed", "AUTH_FAILED"): 2, ("failed", "OVER_QUOTA"): 1}
    )
    html = client_for(officer).get(f"/waves/{wave.pk}/").content.decode()
    assert "<strong>2</strong> of 6 mailboxes moved (33%)" in html
    assert "2.0 GB of 6.0 GB" in html
    assert "h" in html and "left" in html  # the window is open: time left
    assert f'hx-get="/waves/{wave.pk}/live/"' in html and "every 3s" in html
    assert "AUTH_FAILED" in html and "OVER_QUOTA" in html and "Retry these" in html


def test_the_fragment_polls_while_running_and_stops_with_286_when_done(client_for, officer, org_a):
    wave = wave_in_states([org_a], {"migrated": 1, "cutover": 1})
    client = client_for(officer)
    response = client.get(f"/waves/{wave.pk}/live/", headers={"HX-Request": "true"})
    assert response.status_code == 200 and "every 3s" in response.content.decode()
    Mailbox.objects.filter(wave=wave).update(state=M.MIGRATED)
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.COMPLETED)
    response = client.get(f"/waves/{wave.pk}/live/", headers={"HX-Request": "true"})
    assert response.status_code == 286
    html = response.content.decode()
    assert "<strong>2</strong> of 2 mailboxes moved (100%)" in html and "every 3s" not in html


def test_retry_these_retries_the_code_only(client_for, officer, org_a):
    wave = wave_in_states([org_a], {("failed", "AUTH_FAILED"): 2, ("failed", "OVER_QUOTA"): 1})
    response = client_for(officer).post(f"/waves/{wave.pk}/retry-failures/", {"code": "AUTH_FAILED"})
    assert response.status_code == 302
    assert Mailbox.objects.filter(wave=wave, state=M.SCHEDULED).count() == 2
    assert Mailbox.objects.get(wave=wave, state=M.FAILED).last_error_code == "OVER_QUOTA"
    assert Event.objects.filter(action="mailbox.retried", actor=officer).count() == 2


def test_a_trust_admin_cannot_retry_a_whole_code(client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"failed": 1})
    html = client_for(admin_a).get(f"/waves/{wave.pk}/").content.decode()
    assert "Retry these" not in html
    assert (
        client_for(admin_a).post(f"/waves/{wave.pk}/retry-failures/", {"code": "AUTH_FAILED"}).status_code
        == 403
    )
    assert Mailbox.objects.get(wave=wave).state == M.FAILED


def test_a_trust_admin_sees_only_their_organisations_part_of_a_shared_wave(client_for, admin_a, org_a, org_b):
    wave = wave_in_states([org_a, org_b], {"migrated": 1, "failed": 1})
    html = client_for(admin_a).get(f"/waves/{wave.pk}/").content.decode()
    assert "<strong>1</strong> of 2 mailboxes moved" in html  # not 2 of 4
    rows = client_for(admin_a).get(f"/waves/{wave.pk}/mailboxes.csv")
    body = b"".join(rows.streaming_content).decode()
    assert ".rj1@example.nhs.uk" in body and ".rrv@" not in body


def test_a_trust_admin_gets_404_for_a_wave_without_their_organisations(client_for, admin_a, org_b):
    wave = wave_in_states([org_b], {"migrated": 1})
    client = client_for(admin_a)
    assert client.get(f"/waves/{wave.pk}/live/").status_code == 404
    assert client.get(f"/waves/{wave.pk}/mailboxes.csv").status_code == 404
    assert client.post(f"/waves/{wave.pk}/retry-failures/", {"code": "AUTH_FAILED"}).status_code == 404


def test_the_programme_office_places_carried_over_mailboxes_from_the_wave_page(client_for, officer, org_a):
    from tests.wave_fixtures import wave_with

    wave = wave_in_states([org_a], {"migrated": 2, "synced": 3}, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(wave=wave, state="synced").update(carried_over=True)
    target = wave_with(org_a, name="Next evening", status=Wave.Status.DRAFT)
    client = client_for(officer)
    html = client.get(f"/waves/{wave.pk}/").content.decode()
    assert "3 mailboxes had not finished when the window closed" in html and "Next evening" in html

    response = client.post(f"/waves/{wave.pk}/place-carried-over/", {"target": target.pk, "confirm": "1"})
    assert response.status_code == 302 and response["Location"] == f"/waves/{target.pk}/"
    assert Mailbox.objects.filter(wave=target, state="ready", carried_over=False).count() == 3
    assert "Carried over" not in client.get(f"/waves/{wave.pk}/").content.decode()


def test_another_organisations_admin_neither_sees_nor_places_carried_over_mailboxes(
    client_for, admin_b, org_a
):
    from tests.wave_fixtures import wave_with

    wave = wave_in_states([org_a], {"synced": 2}, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(wave=wave).update(carried_over=True)
    target = wave_with(org_a, name="Next evening", status=Wave.Status.DRAFT)
    client = client_for(admin_b)
    assert client.get(f"/waves/{wave.pk}/").status_code == 404
    assert client.post(f"/waves/{wave.pk}/place-carried-over/", {"target": target.pk}).status_code == 404
    assert not Mailbox.objects.filter(wave=target).exists()


def test_a_trust_admin_sees_the_carried_over_count_but_cannot_place_them(client_for, admin_a, org_a):
    from tests.wave_fixtures import wave_with

    wave = wave_in_states([org_a], {"synced": 2}, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(wave=wave).update(carried_over=True)
    target = wave_with(org_a, name="Next evening", status=Wave.Status.DRAFT)
    client = client_for(admin_a)
    html = client.get(f"/waves/{wave.pk}/").content.decode()
    assert "2 mailboxes had not finished" in html and "Place carried-over mailboxes" not in html
    assert client.post(f"/waves/{wave.pk}/place-carried-over/", {"target": target.pk}).status_code == 403
    assert not Mailbox.objects.filter(wave=target).exists()


def test_retry_these_by_htmx_shows_them_queued_at_once(
    client_for, officer, org_a, django_capture_on_commit_callbacks, monkeypatch
):
    pumped = []
    monkeypatch.setattr("migrations_app.services.failures.wave_pump_later", pumped.append)
    wave = wave_in_states([org_a], {"migrated": 1, ("failed", "AUTH_FAILED"): 2})
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.COMPLETED)  # completed with its failures
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(officer).post(
            f"/waves/{wave.pk}/retry-failures/", {"code": "AUTH_FAILED"}, headers={"HX-Request": "true"}
        )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="wave-retried"' in html and "2 mailbox(es) with AUTH_FAILED queued to be retried now" in html
    assert "2 queued to start" in html and "every 3s" in html  # running again, and followed
    assert "No failed mailboxes." in html
    assert pumped == [wave.pk]
    wave.refresh_from_db()
    assert wave.status == Wave.Status.RUNNING


def test_a_finished_wave_is_not_shown_running_with_nothing_moving(client_for, officer, org_a):
    from migrations_app.services.execution import wave_tick

    wave = wave_in_states([org_a], {"migrated": 3, ("failed", "OVER_QUOTA"): 1})
    wave_tick()
    response = client_for(officer).get(f"/waves/{wave.pk}/live/", headers={"HX-Request": "true"})
    assert response.status_code == 286  # no more polling
    assert "Completed" in response.content.decode()
