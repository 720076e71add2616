import datetime as dt
import json
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from migrations_app.models import Mailbox, Organisation, User
from migrations_app.selectors.scoping import organisations_visible_to


def _seed(settings, tmp_path) -> str:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_it_seeds_a_demo_programme_with_realistic_organisations_and_mailboxes(db, settings, tmp_path):
    _seed(settings, tmp_path)
    assert 30 <= Organisation.objects.count() <= 60
    assert Organisation.objects.filter(ods_code="RJ1", kind="trust").exists()
    assert Organisation.objects.filter(ods_code="A81001", kind="gp_practice", parent__ods_code="QHM").exists()
    assert 2_000 <= Mailbox.objects.count() <= 10_000
    assert set(Mailbox.objects.values_list("kind", flat=True).distinct()) >= {"user", "shared", "room"}
    assert Mailbox.objects.exclude(affinity_group="").exists()  # delegates grouped from the permissions file


def test_the_mailboxes_of_ready_organisations_are_checked_with_a_realistic_mix(db, settings, tmp_path):
    _seed(settings, tmp_path)
    ready = Organisation.objects.filter(status=Organisation.Status.READY)
    assert ready.exists()
    assert all(org.gates_met for org in ready)
    theirs = Mailbox.objects.filter(organisation__in=ready)
    plannable = Mailbox.objects.filter(state__in=["ready", "scheduled"])  # scheduled: the demo pilot wave
    assert not plannable.exclude(organisation__in=ready).exists()
    blocked = theirs.filter(state="blocked")
    assert 0 < blocked.count() < theirs.count() * 0.15
    assert plannable.count() + blocked.count() == theirs.count()
    assert len(set(blocked.values_list("blocked_code", flat=True))) >= 3  # several reasons
    assert not theirs.filter(checked_at__isnull=True).exists()


def test_one_of_the_trust_admins_organisations_waits_for_the_visitor_to_check_it(db, settings, tmp_path):
    _seed(settings, tmp_path)
    waiting = Organisation.objects.get(ods_code="RJ122")
    assert waiting.stage == "readiness" and waiting.gates_met
    assert set(Mailbox.objects.filter(organisation=waiting).values_list("state", flat=True)) == {
        "inventoried"
    }
    assert waiting.admins.filter(username="trust").exists()


def test_it_prints_working_passwords_for_each_role(db, settings, tmp_path):
    output = _seed(settings, tmp_path)
    creds = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert {c["username"] for c in creds} == {"programme", "approver", "trust", "viewer"}
    for cred in creds:
        assert cred["password"] in output
        assert authenticate(username=cred["username"], password=cred["password"]) is not None
    trust = User.objects.get(username="trust")
    assert trust.role == User.Role.TRUST_ADMIN
    assert set(organisations_visible_to(trust).values_list("ods_code", flat=True)) == {
        "RJ1",
        "RJ121",
        "RJ122",
    }


def test_running_it_again_changes_nothing_and_prints_the_same_credentials(db, settings, tmp_path):
    first = _seed(settings, tmp_path)
    counts = (Organisation.objects.count(), Mailbox.objects.count(), User.objects.count())
    second = _seed(settings, tmp_path)
    assert (Organisation.objects.count(), Mailbox.objects.count(), User.objects.count()) == counts
    assert first == second


def test_it_leaves_an_approved_pilot_wave_whose_window_is_open_now(db, settings, tmp_path):
    from django.utils import timezone

    from migrations_app.models import Decision, Wave
    from migrations_app.services.execution import wave_tick

    _seed(settings, tmp_path)
    wave = Wave.objects.get(status=Wave.Status.APPROVED)
    assert wave.is_pilot and wave.starts_at <= timezone.now() < wave.ends_at
    assert wave.approved_by.username == "approver" and wave.proposed_by.username == "programme"
    organisations = set(Mailbox.objects.filter(wave=wave).values_list("organisation", flat=True))
    assert len(organisations) > 5
    assert (
        set(Decision.objects.filter(wave=wave, kind="go").values_list("organisation", flat=True))
        == organisations
    )
    assert set(Mailbox.objects.filter(wave=wave).values_list("state", flat=True)) == {"scheduled"}
    assert wave_tick()["started"] == 1  # the beat's first tick starts it


LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    "at, kind, first_day, opened_early",
    [
        # Monday 01:07: inside the weekend window (Friday 18:00 to Monday 06:00), not a "weekday evening"
        (dt.datetime(2026, 11, 30, 1, 7, tzinfo=LONDON), "weekend", dt.date(2026, 11, 27), False),
        # Tuesday 23:00: inside Tuesday evening's window
        (dt.datetime(2026, 12, 1, 23, 0, tzinfo=LONDON), "evening", dt.date(2026, 12, 1), False),
        # Tuesday 14:00: Tuesday evening's window, opened early
        (dt.datetime(2026, 12, 1, 14, 0, tzinfo=LONDON), "evening", dt.date(2026, 12, 1), True),
        # Tuesday 05:30: Monday evening's closes in half an hour: kept open for the demo (charted as Monday's)
        (dt.datetime(2026, 12, 1, 5, 30, tzinfo=LONDON), "evening", dt.date(2026, 11, 30), False),
        # Tuesday 06:10: Monday evening's has closed: Tuesday evening's, opened early
        (dt.datetime(2026, 12, 1, 6, 10, tzinfo=LONDON), "evening", dt.date(2026, 12, 1), True),
        # a summer Thursday 19:00 BST (18:00 UTC): the evening window that opened at 18:00 BST
        (dt.datetime(2026, 7, 2, 18, 0, tzinfo=dt.UTC), "evening", dt.date(2026, 7, 2), False),
    ],
)
def test_the_demo_pilot_runs_in_the_window_its_name_says(db, at, kind, first_day, opened_early):
    from migrations_app.management.commands.seed_demo import demo_window
    from migrations_app.models import ProgrammeSettings
    from migrations_app.planning.calendar import WindowRules
    from migrations_app.selectors.progress import night_of

    window, opens, closes = demo_window(WindowRules.from_settings(ProgrammeSettings.load()), [], at)
    assert window.kind == kind and window.first_day == first_day
    assert (opens != window.starts_at) is opened_early
    assert opens <= at and closes - at >= dt.timedelta(hours=2)
    if not opened_early:
        assert window.starts_at.astimezone(LONDON).strftime("%H:%M") == "18:00"
    assert night_of(opens) == window.first_day  # the dashboard charts it under the night its name gives


def test_the_seeded_pilots_name_and_kind_agree_with_its_london_times(db, settings, tmp_path):
    from migrations_app.models import Wave

    _seed(settings, tmp_path)
    wave = Wave.objects.get(status=Wave.Status.APPROVED)
    starts = wave.starts_at.astimezone(LONDON)
    if wave.kind == Wave.Kind.EVENING:
        assert f"Evening {starts:%a} {starts.day} {starts:%b %Y}" in wave.name or "opened early" in wave.name
    if "opened early" in wave.name:
        assert wave.name.endswith(f"opened early for the demo at {starts:%H:%M}")
    elif "kept open" in wave.name:
        assert wave.name.endswith(f"kept open for the demo until {wave.ends_at.astimezone(LONDON):%H:%M}")
    else:
        assert starts.strftime("%H:%M") == "18:00"
