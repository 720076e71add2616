"""The planner against the database: windows from the programme settings, aggregates, commit, moves, pilots."""

import datetime as dt
import random

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count

from migrations_app.models import (
    Allocation,
    BlackoutPeriod,
    ClosedPeriod,
    Event,
    Mailbox,
    Organisation,
    ProgrammeSettings,
    Wave,
)
from migrations_app.planning.calendar import LONDON, WindowRules, windows_between
from migrations_app.planning.placement import BLACKOUT_COVERS_HORIZON, TOO_LARGE
from migrations_app.planning.units import large_organisations
from migrations_app.selectors.planning import _chunk_rows, _group_rows, _plannable
from migrations_app.selectors.waves import wave_members, wave_of_mailbox, wave_totals
from migrations_app.services.pilots import pilot_wave_create
from migrations_app.services.plans import plan_commit, plan_preview
from migrations_app.services.wave_moves import wave_move_mailbox, wave_move_organisation
from migrations_app.services.waves import wave_approve, wave_go, wave_propose
from tests.factories import OrganisationFactory
from tests.wave_fixtures import ready_mailboxes

MONDAY = dt.date(2026, 6, 1)


def small_windows(**changes):
    """Tiny windows so that a handful of mailboxes exercises the rules."""
    settings = ProgrammeSettings.load()
    values = {
        "evening_capacity_mailboxes": 10,
        "evening_capacity_bytes": 10**12,
        "weekend_capacity_mailboxes": 30,
        "weekend_capacity_bytes": 10**12,
        "single_wave_organisation_max": 8,
        "large_organisation_chunk": 4,
        "planning_horizon_days": 28,
        **changes,
    }
    for name, value in values.items():
        setattr(settings, name, value)
    settings.save()
    return settings


def members_by_wave(waves):
    return {w.pk: set(wave_members(w).values_list("pk", flat=True)) for w in waves}


# --- windows ----------------------------------------------------------------------------------------------------


def test_windows_keep_london_wall_clock_across_the_march_change(db):
    rules = WindowRules.from_settings(ProgrammeSettings.load())
    # last Sunday of March 2026 is the 29th: clocks go forward at 01:00 GMT
    weekend = [
        w for w in windows_between(rules, dt.date(2026, 3, 27), dt.date(2026, 3, 27)) if w.kind == "weekend"
    ][0]
    assert weekend.starts_at.astimezone(LONDON).timetuple()[:5] == (2026, 3, 27, 18, 0)
    assert weekend.ends_at.astimezone(LONDON).timetuple()[:5] == (2026, 3, 30, 6, 0)
    assert weekend.starts_at.astimezone(LONDON).utcoffset() == dt.timedelta(0)
    assert weekend.ends_at.astimezone(LONDON).utcoffset() == dt.timedelta(hours=1)
    assert weekend.ends_at - weekend.starts_at == dt.timedelta(hours=59)  # an hour short


def test_windows_keep_london_wall_clock_across_the_october_change(db):
    settings = ProgrammeSettings.load()
    settings.evening_days = "0123456"  # a Saturday evening too, to cross the change overnight
    settings.save()
    rules = WindowRules.from_settings(settings)
    windows = windows_between(rules, dt.date(2026, 10, 23), dt.date(2026, 10, 24))
    weekend = [w for w in windows if w.kind == "weekend"][0]
    assert weekend.ends_at - weekend.starts_at == dt.timedelta(hours=61)  # an hour long
    saturday = [w for w in windows if w.kind == "evening" and w.first_day == dt.date(2026, 10, 24)][0]
    assert saturday.starts_at.astimezone(LONDON).hour == 18
    assert saturday.ends_at.astimezone(LONDON).hour == 6
    assert saturday.ends_at - saturday.starts_at == dt.timedelta(hours=13)


def test_bank_holidays_and_freezes_close_windows(db):
    ClosedPeriod.objects.create(
        kind="bank_holiday",
        starts_on=dt.date(2026, 5, 25),
        ends_on=dt.date(2026, 5, 25),
        name="Spring bank holiday",
    )
    ClosedPeriod.objects.create(
        kind="freeze", starts_on=dt.date(2026, 6, 3), ends_on=dt.date(2026, 6, 3), name="Change freeze"
    )
    from migrations_app.selectors.planning import closed_periods

    rules = WindowRules.from_settings(ProgrammeSettings.load())
    start, end = dt.date(2026, 5, 18), dt.date(2026, 6, 7)
    days = {(w.kind, w.first_day) for w in windows_between(rules, start, end, closed_periods(start, end))}
    assert ("weekend", dt.date(2026, 5, 22)) not in days  # runs into the bank holiday Monday
    assert ("evening", dt.date(2026, 5, 25)) not in days
    assert ("evening", dt.date(2026, 6, 2)) not in days  # ends on the freeze day
    assert ("evening", dt.date(2026, 6, 3)) not in days
    assert ("evening", dt.date(2026, 6, 4)) in days
    assert ("evening", dt.date(2026, 5, 26)) in days


# --- the plan -----------------------------------------------------------------------------------------------------


def test_the_aggregates_match_the_mailboxes(db):
    """The SQL GROUP BY and the chunking pass agree with a count done the slow way."""
    small_windows()
    rng = random.Random(7)
    orgs = [OrganisationFactory(ods_code=f"AG{i}") for i in range(4)]
    for org in orgs:
        for _ in range(rng.randint(1, 15)):
            ready_mailboxes(org, 1, size=rng.randint(1, 10**6), group=rng.choice(["", "", "G1", "G2"]))
    ready_mailboxes(orgs[0], 3, state=Mailbox.State.INVENTORIED)
    rows = _group_rows(_plannable())
    slow = {}
    for m in Mailbox.objects.filter(state="ready"):
        n, b = slow.get((m.organisation_id, m.affinity_group), (0, 0))
        slow[(m.organisation_id, m.affinity_group)] = (n + 1, b + m.size_bytes)
    assert {(r.organisation_id, r.affinity_group): (r.mailboxes, r.bytes) for r in rows} == slow
    large = {orgs[0].pk, orgs[1].pk}
    chunks = _chunk_rows(_plannable(), large, 4)
    for org in orgs[:2]:
        ungrouped = list(
            Mailbox.objects.filter(organisation=org, state="ready", affinity_group="").order_by("pk")
        )
        expected = [
            (p[0].pk, p[-1].pk, len(p)) for p in (ungrouped[i : i + 4] for i in range(0, len(ungrouped), 4))
        ]
        got = sorted((c.first_id, c.last_id, c.mailboxes) for c in chunks if c.organisation_id == org.pk)
        assert got == expected


def test_preview_places_every_ready_mailbox_and_saves_nothing(db, officer):
    small_windows()
    a, b = OrganisationFactory(ods_code="PA1"), OrganisationFactory(ods_code="PB1")
    ready_mailboxes(a, 6)
    ready_mailboxes(b, 7)
    ready_mailboxes(b, 5, state=Mailbox.State.INVENTORIED)
    plan = plan_preview(start=MONDAY, actor=officer)
    assert plan.mailboxes == 13 and not plan.unplaced
    # 6 + 7 > 10: two evenings, each organisation whole
    assert [w.mailboxes for w in plan.waves] == [6, 7]
    assert plan.finish == plan.waves[-1].window.ends_at
    assert not Wave.objects.exists() and not Allocation.objects.exists()


def test_priority_goes_first(db, officer):
    small_windows()
    late, early = (
        OrganisationFactory(ods_code="LATE1", priority=50),
        OrganisationFactory(ods_code="ZZEARLY", priority=1),
    )
    ready_mailboxes(late, 7)
    ready_mailboxes(early, 7)
    plan = plan_preview(start=MONDAY, actor=officer)
    assert [w.pieces[0].organisation_id for w in plan.waves] == [early.pk, late.pk]


def test_blackouts_and_preferences_are_honoured(db, officer):
    small_windows()
    weekender = OrganisationFactory(ods_code="WKD1", preferred_window="weekend")
    busy = OrganisationFactory(ods_code="BSY1")
    BlackoutPeriod.objects.create(organisation=busy, starts_on=MONDAY, ends_on=MONDAY + dt.timedelta(days=9))
    ready_mailboxes(weekender, 3)
    ready_mailboxes(busy, 3)
    plan = plan_preview(start=MONDAY, actor=officer)
    where = {p.organisation_id: w.window for w in plan.waves for p in w.pieces}
    assert where[weekender.pk].kind == "weekend"
    assert where[busy.pk].first_day > MONDAY + dt.timedelta(days=9)


def test_it_reports_what_it_cannot_place(db, officer):
    small_windows(weekend_capacity_mailboxes=6, single_wave_organisation_max=100)
    huge_group = OrganisationFactory(ods_code="HUGE1")
    ready_mailboxes(huge_group, 12, group="DELEGATES")  # a group larger than any window
    frozen_out = OrganisationFactory(ods_code="FRZ1")
    BlackoutPeriod.objects.create(
        organisation=frozen_out,
        starts_on=MONDAY - dt.timedelta(days=1),
        ends_on=MONDAY + dt.timedelta(days=60),
    )
    ready_mailboxes(frozen_out, 2)
    plan = plan_preview(start=MONDAY, actor=officer)
    reasons = {u.pieces[0].organisation_id: u.reason for u in plan.unplaced}
    assert reasons == {huge_group.pk: TOO_LARGE, frozen_out.pk: BLACKOUT_COVERS_HORIZON}
    assert plan.unplaced_mailboxes == 14


def test_a_large_organisation_spreads_over_consecutive_waves_by_group_and_chunk(db, officer):
    small_windows()  # evenings of 10, organisations over 8 are spread, chunks of 4
    trust = OrganisationFactory(ods_code="BIG1")
    ready_mailboxes(trust, 3, group="EXEC")
    ready_mailboxes(trust, 14)
    rules = WindowRules.from_settings(ProgrammeSettings.load())
    assert large_organisations(rules, {}, _group_rows(_plannable())) == {trust.pk}
    plan = plan_preview(start=MONDAY, actor=officer)
    assert not plan.unplaced and plan.mailboxes == 17
    kinds = sorted(p.kind for w in plan.waves for p in w.pieces)
    assert kinds == ["chunk"] * 4 + ["group"]
    assert all(w.mailboxes <= 10 for w in plan.waves)
    starts = [w.window.starts_at for w in plan.waves]
    assert starts == sorted(starts) and len(starts) == 2  # consecutive evenings


def test_an_affinity_group_across_organisations_moves_together(db, officer):
    small_windows()
    a, b = OrganisationFactory(ods_code="XA1"), OrganisationFactory(ods_code="XB1", priority=200)
    ready_mailboxes(a, 2)
    ready_mailboxes(a, 1, group="SHARED-ICB")
    ready_mailboxes(b, 1, group="SHARED-ICB")
    ready_mailboxes(b, 1)
    plan = plan_preview(start=MONDAY, actor=officer)
    assert len(plan.waves) == 1 and {p.organisation_id for p in plan.waves[0].pieces} == {a.pk, b.pk}


def test_commit_saves_allocations_not_mailbox_rows(db, officer):
    small_windows()
    trust = OrganisationFactory(ods_code="BIG2")
    ready_mailboxes(trust, 14)
    practice = OrganisationFactory(ods_code="A81001")
    ready_mailboxes(practice, 4)
    plan = plan_preview(start=MONDAY, actor=officer)
    _, waves = plan_commit(start=MONDAY, actor=officer, expected_fingerprint=plan.fingerprint)
    assert len(waves) == len(plan.waves)
    assert not Mailbox.objects.filter(wave__isnull=False).exists()
    assert set(Mailbox.objects.values_list("state", flat=True)) == {"ready"}
    members = members_by_wave(waves)
    assert sum(len(m) for m in members.values()) == 18
    assert set().union(*members.values()) == set(Mailbox.objects.values_list("pk", flat=True))
    for wave in waves:
        assert wave.planned_mailboxes == wave_totals(wave)["mailboxes"] <= wave.capacity_mailboxes
    assert Event.objects.filter(action="plan.committed").count() == 1


def test_commit_refuses_a_plan_that_changed_since_the_preview(db, officer):
    small_windows()
    org = OrganisationFactory(ods_code="CHG1")
    ready_mailboxes(org, 2)
    plan = plan_preview(start=MONDAY, actor=officer)
    ready_mailboxes(org, 1)
    with pytest.raises(ValidationError, match="changed since you previewed"):
        plan_commit(start=MONDAY, actor=officer, expected_fingerprint=plan.fingerprint)
    assert not Wave.objects.exists()


def test_replanning_replaces_unproposed_drafts_and_keeps_proposed_waves(db, officer):
    small_windows()
    a, b = OrganisationFactory(ods_code="RPA"), OrganisationFactory(ods_code="RPB")
    ready_mailboxes(a, 6)
    ready_mailboxes(b, 6)
    _, waves = plan_commit(start=MONDAY, actor=officer)
    first = waves[0]
    wave_propose(wave=first, actor=officer)
    _, again = plan_commit(start=MONDAY, actor=officer)
    assert Wave.objects.filter(pk=first.pk, status="proposed").exists()
    assert not Wave.objects.filter(pk=waves[1].pk).exists()
    # the proposed wave's organisation is not planned twice, and its window's room is shared
    planned = {
        p for w in again for p in Allocation.objects.filter(wave=w).values_list("organisation_id", flat=True)
    }
    assert planned == {b.pk}
    assert again[0].starts_at != first.starts_at


def test_only_the_programme_office_plans(db, admin_a, viewer):
    for user in (admin_a, viewer):
        with pytest.raises(PermissionDenied):
            plan_preview(start=MONDAY, actor=user)
        with pytest.raises(PermissionDenied):
            plan_commit(start=MONDAY, actor=user)


# --- moves ------------------------------------------------------------------------------------------------------


def test_moving_an_organisation_warns_about_capacity_then_moves_when_confirmed(db, officer):
    small_windows()
    a, b = OrganisationFactory(ods_code="MVA"), OrganisationFactory(ods_code="MVB")
    ready_mailboxes(a, 6)
    ready_mailboxes(b, 7)
    _, (first, second) = plan_commit(start=MONDAY, actor=officer)
    result = wave_move_organisation(actor=officer, organisation=b, source=second, target=first)
    assert not result.moved and "over its capacity of 10" in result.warnings[0]
    assert set(wave_members(second).values_list("organisation_id", flat=True)) == {b.pk}
    result = wave_move_organisation(actor=officer, organisation=b, source=second, target=first, confirm=True)
    assert result.moved
    first.refresh_from_db()
    assert first.planned_mailboxes == 13 and wave_totals(second)["mailboxes"] == 0
    assert Event.objects.filter(action="wave.organisation_moved").exists()


def test_moving_a_mailbox_pins_it_and_warns_when_it_splits_a_group(db, officer):
    small_windows()
    a, b = OrganisationFactory(ods_code="MMA"), OrganisationFactory(ods_code="MMB")
    ready_mailboxes(a, 5)
    (grouped,) = ready_mailboxes(a, 1, group="PA-TEAM")
    ready_mailboxes(b, 7)
    _, (first, second) = plan_commit(start=MONDAY, actor=officer)
    assert wave_of_mailbox(grouped) == first
    result = wave_move_mailbox(actor=officer, mailbox=grouped, target=second)
    assert not result.moved and any("splits the group" in w for w in result.warnings)
    assert wave_move_mailbox(actor=officer, mailbox=grouped, target=second, confirm=True).moved
    grouped.refresh_from_db()
    assert grouped.wave == second and grouped.state == "ready"
    assert wave_of_mailbox(grouped) == second
    assert grouped.pk not in members_by_wave([first])[first.pk]


def test_changing_an_approved_wave_sends_it_back_for_approval(db, officer, approver):
    small_windows()
    a, b = OrganisationFactory(ods_code="APA"), OrganisationFactory(ods_code="APB")
    ready_mailboxes(a, 6)
    ready_mailboxes(b, 4)
    ready_mailboxes(b, 1, group="B-TEAM")
    _, (first, second) = plan_commit(start=MONDAY, actor=officer)
    wave_propose(wave=first, actor=officer)
    wave_go(wave=first, organisation=a, actor=officer, reason="confirmed by phone")
    wave_approve(wave=first, actor=approver)
    assert Mailbox.objects.filter(organisation=a, wave=first, state="scheduled").count() == 6
    wave_move_organisation(actor=officer, organisation=b, source=second, target=first, confirm=True)
    first.refresh_from_db()
    assert first.status == "proposed" and first.approved_by is None
    assert Event.objects.filter(action="wave.unfrozen", wave=first.pk).exists()
    assert wave_totals(first)["mailboxes"] == 11


# --- pilots -------------------------------------------------------------------------------------------------------


def test_a_pilot_wave_takes_a_handful_per_organisation(db, officer):
    small_windows(evening_capacity_mailboxes=100)
    a, b = OrganisationFactory(ods_code="PLA"), OrganisationFactory(ods_code="PLB")
    ready_mailboxes(a, 8, size=5)
    ready_mailboxes(a, 2, size=1, group="G")  # grouped mailboxes are never piloted
    ready_mailboxes(b, 2)
    wave = pilot_wave_create(actor=officer, starts_on=MONDAY, organisations=[a, b], per_organisation=3)
    assert wave.is_pilot and wave.status == "draft" and wave.name.startswith("Pilot")
    counts = dict(wave_members(wave).order_by().values_list("organisation_id").annotate(n=Count("id")))
    assert counts == {a.pk: 3, b.pk: 2}
    assert not wave_members(wave).exclude(affinity_group="").exists()
    # the planner leaves piloted mailboxes alone
    plan = plan_preview(start=MONDAY, actor=officer)
    assert plan.mailboxes == 12 - 5


def test_a_pilot_needs_an_open_window(db, officer):
    with pytest.raises(ValidationError, match="No weekday evening window"):
        pilot_wave_create(actor=officer, starts_on=dt.date(2026, 6, 6), organisations=[OrganisationFactory()])


def test_organisation_status_is_not_the_planners_business(db, officer):
    """Only mailbox state decides: an organisation still enrolling with ready mailboxes is planned."""
    small_windows()
    org = OrganisationFactory(ods_code="ENR1", status=Organisation.Status.ENROLLED)
    ready_mailboxes(org, 2)
    assert plan_preview(start=MONDAY, actor=officer).mailboxes == 2


def test_settings_changes_are_audited_and_validated(db, officer, admin_a):
    from migrations_app.services.programme import closed_period_add, programme_settings_update

    programme_settings_update(actor=officer, evening_capacity_mailboxes=21_000)
    event = Event.objects.get(action="programme.settings_changed")
    assert event.data == {"evening_capacity_mailboxes": ["22000", "21000"]}
    with pytest.raises(ValidationError):
        programme_settings_update(actor=officer, evening_days="0189")
    with pytest.raises(PermissionDenied):
        programme_settings_update(actor=admin_a, go_required_from_every_organisation=False)
    with pytest.raises(ValidationError):
        closed_period_add(
            actor=officer, kind="freeze", starts_on=MONDAY, ends_on=MONDAY - dt.timedelta(days=1), name="x"
        )


def test_the_readiness_check_command_lets_the_demo_be_planned(db, officer):
    from django.core.management import call_command

    org = OrganisationFactory(ods_code="DEMO1")
    ready_mailboxes(org, 3, state=Mailbox.State.INVENTORIED)
    call_command("readiness_check", "demo1", "--here")
    assert Mailbox.objects.filter(state="ready").count() == 3
    assert plan_preview(start=MONDAY, actor=officer).mailboxes == 3


def test_a_move_into_a_wave_cancelled_meanwhile_is_refused(db, officer):
    from migrations_app.services.waves import WaveConflict, wave_cancel

    small_windows()
    a, b = OrganisationFactory(ods_code="STA"), OrganisationFactory(ods_code="STB")
    ready_mailboxes(a, 6)
    ready_mailboxes(b, 3)
    ready_mailboxes(b, 2, group="B-PAIR")
    _, (first, second) = plan_commit(start=MONDAY, actor=officer)
    stale = Wave.objects.get(pk=first.pk)
    wave_cancel(wave=first, actor=officer, reason="Window lost")
    with pytest.raises(WaveConflict):
        wave_move_organisation(actor=officer, organisation=b, source=second, target=stale, confirm=True)
    assert Allocation.objects.filter(wave=second, organisation=b).exists()
