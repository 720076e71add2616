"""The programme dashboard: states, stages, waves, per-night chart, forecast, attention share; scoped."""

import datetime as dt
import re
from zoneinfo import ZoneInfo

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from migrations_app.models import Mailbox
from migrations_app.selectors.progress import organisation_stage_counts
from tests.factories import OrganisationFactory
from tests.status_fixtures import wave_in_states
from tests.wave_fixtures import ready_mailboxes


def stages(user):
    return {value: n for value, _, n in organisation_stage_counts(user)}


def test_it_shows_the_programme_in_figures(client_for, officer, org_a, org_b):
    wave_in_states([org_a], {"migrated": 3, "failed": 1}, hours_ago=30, size=1024**4)
    ready_mailboxes(org_b, 4)
    html = client_for(officer).get("/dashboard/").content.decode()
    assert 'id="figure-moved">3</span> of 8' in html
    assert "Forecast finish" in html and "Too little history" in html  # one wave a day ago: no forecast yet
    assert 'id="figure-attention">25.0%</span> 1 of 4' in html  # 1 failed of the 4 handled by a wave
    assert 'id="per-night"' in html and '<span class="portal-bar__text">3</span>' in html and "3.0 TB" in html


def test_it_reads_no_mailbox_rows(client_for, officer, org_a):
    wave_in_states([org_a], {"migrated": 2, "syncing": 2})
    client = client_for(officer)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/dashboard/").status_code == 200
    assert not [q["sql"] for q in queries if '"migrations_app_mailbox"' in q["sql"]]


def test_a_trust_admin_sees_only_their_organisations(client_for, admin_a, org_a, org_b):
    wave_in_states([org_a], {"migrated": 1})
    wave_in_states([org_b], {"migrated": 5}, name="Other")
    html = client_for(admin_a).get("/dashboard/").content.decode()
    assert 'id="figure-moved">1</span> of 1' in html
    assert sum(stages(admin_a).values()) == 1


def test_organisations_are_counted_by_stage(client_for, officer):
    for stage, n in {
        "enrolled": 1,
        "readiness": 2,
        "pilot": 1,
        "sync_switch": 1,
        "mop_up": 1,
        "closed": 1,
    }.items():
        for _ in range(n):
            OrganisationFactory(stage=stage)
    assert stages(officer) == {
        "enrolled": 1,
        "readiness": 2,
        "pilot": 1,
        "sync_switch": 1,
        "mop_up": 1,
        "closed": 1,
    }
    html = client_for(officer).get("/dashboard/").content.decode()
    assert (
        '<tr class="nhsuk-table__row" data-stage="readiness"><td class="nhsuk-table__cell">Readiness</td><td class="nhsuk-table__cell nhsuk-table__cell--numeric">2</td>'
        in html
    )


def test_it_shows_blocked_mailboxes_by_reason_programme_wide(
    client_for, officer, viewer, admin_a, org_a, org_b
):
    ready_mailboxes(org_a, 3, state="blocked")
    ready_mailboxes(org_b, 2, state="blocked")
    Mailbox.objects.filter(organisation=org_a).update(blocked_code="NOT_LICENSED")
    Mailbox.objects.filter(organisation=org_b).update(blocked_code="OVER_QUOTA")
    html = client_for(officer).get("/dashboard/").content.decode()
    assert (
        'data-code="NOT_LICENSED"><td class="nhsuk-table__cell">No Exchange Online licence</td><td class="nhsuk-table__cell nhsuk-table__cell--numeric">3</td>'
        in html
    )
    assert 'data-code="OVER_QUOTA"' in html
    own = client_for(admin_a).get("/dashboard/").content.decode()
    assert 'data-code="NOT_LICENSED"' in own and 'data-code="OVER_QUOTA"' not in own


def test_the_forecast_uses_measured_throughput(client_for, officer, org_a):
    # 28 moved in three waves over the last 27 days: about 1 a day
    for moved, days_ago in [(10, 27), (9, 20), (9, 10)]:
        wave_in_states([org_a], {"migrated": moved}, hours_ago=24 * days_ago)
    ready_mailboxes(org_a, 10)
    html = client_for(officer).get("/dashboard/").content.decode()
    finish = timezone.localtime().date() + dt.timedelta(days=10)
    assert f"{finish.day} {finish:%B %Y}" in html


def test_anonymous_is_sent_to_sign_in(client):
    assert client.get("/dashboard/").status_code == 302


def test_home_opens_the_dashboard(client_for, viewer):
    response = client_for(viewer).get("/")
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert Mailbox.objects.count() == 0


def test_no_forecast_from_minutes_of_one_pilot(client_for, officer, org_a, admin_a):
    wave_in_states([org_a], {"migrated": 18}, hours_ago=1)
    ready_mailboxes(org_a, 1000)
    html = client_for(officer).get("/dashboard/").content.decode()
    assert "Too little history" in html and "mailboxes a day" not in html
    assert "<h1>Programme dashboard</h1>" in html


def test_a_trust_admins_dashboard_is_titled_for_their_organisations_and_sizes_scale(
    client_for, admin_a, org_a
):
    wave_in_states([org_a], {"migrated": 3}, hours_ago=30)
    html = client_for(admin_a).get("/dashboard/").content.decode()
    assert f"<h1>Dashboard: {org_a.name}</h1>".replace("'", "&#39;") in html
    # 3 small mailboxes: their size in a unit that fits, not "0.00 TB"
    assert "0.00 TB" not in html and re.search(r'portal-bar__text">[\d.,]+ (bytes|KB|MB|GB)<', html)


def test_the_forecast_says_what_it_is_computed_from_and_gives_a_range(client_for, officer, org_a):
    # three nights over 27 days: 10, 8 and 19 moved; 70 to go
    for moved, days_ago in [(10, 27), (8, 20), (19, 10)]:
        wave_in_states([org_a], {"migrated": moved}, hours_ago=24 * days_ago)
    ready_mailboxes(org_a, 70)
    html = client_for(officer).get("/dashboard/").content.decode()
    today = timezone.localtime().date()
    # 37 in 27 days: 1.37 a day -> 51.1 days; a night every 9 days, at 8 a night -> 78.75 days, at 19 -> 33.2
    expected = {"forecast": 52, "latest": 79, "earliest": 34}
    days = {k: today + dt.timedelta(days=n) for k, n in expected.items()}
    assert f'<span class="portal-figure">{days["forecast"].day} {days["forecast"]:%B %Y}</span>' in html
    shown = re.search(r'id="forecast-range">([^<]*)<', html)[1]
    assert shown == (
        f"between {days['earliest'].day} {days['earliest']:%b %Y} and {days['latest'].day} {days['latest']:%b %Y}"
    )
    basis = re.search(r'id="forecast-basis">([^<]*)<', html)[1]
    assert (
        "From 37 mailboxes moved by 3 waves in 3 night(s) over the last 27 days: 1.4 a day on average"
        in basis
    )
    assert "slowest (8)" in basis and "fastest (19)" in basis


def test_nights_are_the_london_date_of_the_window_they_belong_to(db):
    from migrations_app.selectors.progress import night_of

    london = ZoneInfo("Europe/London")
    sunday = dt.date(2026, 11, 29)
    # an evening window opened on Sunday at 18:00; one opened at Monday 01:24 belongs to Sunday night too
    assert night_of(dt.datetime(2026, 11, 29, 18, 0, tzinfo=london)) == sunday
    assert night_of(dt.datetime(2026, 11, 30, 1, 24, tzinfo=london)) == sunday
    # in summer 23:30 UTC on Sunday is 00:30 BST on Monday: still Sunday night, not Monday's
    assert night_of(dt.datetime(2026, 6, 28, 23, 30, tzinfo=dt.UTC)) == dt.date(2026, 6, 28)
    # 18:30 UTC on a summer Sunday is 19:30 BST that evening
    assert night_of(dt.datetime(2026, 6, 28, 18, 30, tzinfo=dt.UTC)) == dt.date(2026, 6, 28)


def test_the_chart_dates_a_window_by_its_london_night(client_for, officer, org_a):
    from migrations_app.selectors.progress import night_of

    wave = wave_in_states([org_a], {"migrated": 4}, hours_ago=48)
    night = night_of(wave.starts_at)
    chart = client_for(officer).get("/dashboard/").content.decode().split('id="per-night"')[1]
    assert re.search(r'<th class="nhsuk-table__header" scope="row">([^<]*)</th>', chart)[1] == (
        f"{night:%a} {night.day} {night:%b}"
    )


def test_a_trust_admins_dashboard_does_not_say_programme_for_their_figures(client_for, admin_a, org_a):
    wave_in_states([org_a], {"migrated": 2}, hours_ago=30)
    html = client_for(admin_a).get("/dashboard/").content.decode()
    assert "Programme: " not in html and "Your organisations: " in html
    assert "programme-wide" not in html


def test_no_forecast_once_every_mailbox_has_moved(client_for, officer, org_a):
    for moved, days_ago in [(10, 27), (8, 20), (19, 10)]:
        wave_in_states([org_a], {"migrated": moved}, hours_ago=24 * days_ago)
    html = client_for(officer).get("/dashboard/").content.decode()
    assert "Every mailbox has moved" in html and 'id="forecast-range"' not in html
