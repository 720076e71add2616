"""Wave pages: the timeline, a wave, the actions (htmx and plain), moves, the planner; every role."""

import datetime as dt

import pytest

from migrations_app.models import Decision, Mailbox, ProgrammeSettings, Wave
from tests.factories import OrganisationFactory
from tests.wave_fixtures import ready_mailboxes, wave_with

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def wave(db, org_a, org_b):
    ready_mailboxes(org_a, 3)
    ready_mailboxes(org_b, 2)
    return wave_with(org_a, org_b, day=dt.date(2030, 6, 3), name="Evening Mon 3 Jun 2030")


@pytest.fixture
def other_wave(db):
    outsider = OrganisationFactory(ods_code="ZZZ1")
    ready_mailboxes(outsider, 1)
    return wave_with(outsider, name="Outsiders", day=dt.date(2030, 6, 4))


def test_pages_need_a_sign_in(client, wave):
    for url in ("/waves/", f"/waves/{wave.pk}/", "/waves/planner/"):
        assert client.get(url).status_code == 302


def test_the_timeline_groups_waves_by_week_and_scopes_them(client_for, wave, other_wave, officer, admin_a):
    page = client_for(officer).get("/waves/").content.decode()
    assert "Week of 3 June 2030" in page and wave.name in page and "Outsiders" in page
    assert 'href="/waves/"' in page  # the header link
    page = client_for(admin_a).get("/waves/").content.decode()
    assert wave.name in page and "Outsiders" not in page
    assert client_for(admin_a).get(f"/waves/{other_wave.pk}/").status_code == 404


def test_a_wave_page_shows_counts_capacity_and_only_your_organisations(client_for, wave, officer, admin_a):
    page = client_for(officer).get(f"/waves/{wave.pk}/").content.decode()
    assert "5 of 22,000" in page and "RJ1" in page and "RRV" in page
    assert "Propose for approval" in page and "portal-progress__bar" in page
    page = client_for(admin_a).get(f"/waves/{wave.pk}/").content.decode()
    assert "RJ1" in page and "RRV" not in page and "Propose for approval" not in page


def test_the_workflow_through_the_pages_with_htmx(client, wave, officer, approver, admin_a, admin_b):
    client.force_login(officer)
    confirm = client.post(f"/waves/{wave.pk}/propose/", **HTMX).content.decode()
    assert "Propose for approval?" in confirm  # asked first
    panel = client.post(f"/waves/{wave.pk}/propose/", {"confirmed": "1"}, **HTMX).content.decode()
    assert "Proposed" in panel and "2 organisation(s) have not said go yet" in panel
    assert "is proposed: its organisations can now say go or no-go" in panel  # says what happened
    client.force_login(admin_a)
    page = client.get(f"/waves/{wave.pk}/").content.decode()
    assert "Go<span" in page  # their own organisation's buttons
    panel = client.post(f"/waves/{wave.pk}/go/", {"organisation": "RJ1"}, **HTMX).content.decode()
    assert "RJ1 said go for" in panel
    client.force_login(admin_b)
    client.post(f"/waves/{wave.pk}/go/", {"organisation": "RRV"}, **HTMX)
    client.force_login(officer)
    panel = client.post(f"/waves/{wave.pk}/approve/", **HTMX)
    assert panel.status_code == 403  # the proposer
    client.force_login(approver)
    panel = client.post(f"/waves/{wave.pk}/approve/", **HTMX).content.decode()
    assert "Approved" in panel and "is approved: its mailboxes are scheduled" in panel
    assert Mailbox.objects.filter(wave=wave, state="scheduled").count() == 5
    # approving again: someone else got there first; the panel says so
    panel = client.post(f"/waves/{wave.pk}/approve/", **HTMX).content.decode()
    assert "That did not happen" in panel and "approved now" in panel


def test_destructive_actions_ask_first_and_need_a_reason(client_for, wave, officer):
    client = client_for(officer)
    confirm = client.get(f"/waves/{wave.pk}/cancel/", **HTMX).content.decode()
    assert "Yes, cancel wave" in confirm and 'name="confirmed"' in confirm
    # a POST without the confirmation step only shows the confirmation
    client.post(f"/waves/{wave.pk}/cancel/", {"reason": "x"})
    assert Wave.objects.get(pk=wave.pk).status == "draft"
    response = client.post(f"/waves/{wave.pk}/cancel/", {"confirmed": "1", "reason": ""})
    assert response.status_code == 400 and "Give a reason" in response.content.decode()
    response = client.post(f"/waves/{wave.pk}/cancel/", {"confirmed": "1", "reason": "Re-sequenced"})
    assert response.status_code == 302 and Wave.objects.get(pk=wave.pk).status == "cancelled"
    assert Decision.objects.get(kind="cancel").reason == "Re-sequenced"


def test_no_go_from_the_page(client_for, wave, officer, admin_b):
    client_for(officer).post(f"/waves/{wave.pk}/propose/", {"confirmed": "1"})
    client = client_for(admin_b)
    confirm = client.get(f"/waves/{wave.pk}/no-go/?organisation=RRV").content.decode()
    assert "No-go for RRV?" in confirm
    response = client.post(
        f"/waves/{wave.pk}/no-go/", {"organisation": "RRV", "confirmed": "1", "reason": "EPR go-live"}
    )
    assert response.status_code == 302
    assert Mailbox.objects.filter(organisation__ods_code="RRV", state="ready", wave__isnull=True).count() == 2


def test_permission_boundaries_on_the_pages(client_for, wave, officer, admin_a, viewer):
    client_for(officer).post(f"/waves/{wave.pk}/propose/", {"confirmed": "1"})
    admin = client_for(admin_a)
    assert admin.post(f"/waves/{wave.pk}/approve/").status_code == 403
    assert admin.post(f"/waves/{wave.pk}/pause/", {"confirmed": "1", "reason": "x"}).status_code == 403
    # RRV is not theirs and not visible to them
    assert (
        admin.post(
            f"/waves/{wave.pk}/no-go/", {"organisation": "RRV", "confirmed": "1", "reason": "x"}
        ).status_code
        == 404
    )
    watcher = client_for(viewer)
    assert watcher.get(f"/waves/{wave.pk}/").status_code == 200
    assert watcher.post(f"/waves/{wave.pk}/go/", {"organisation": "RJ1"}).status_code == 403
    assert watcher.get("/waves/planner/").status_code == 403
    assert admin.get("/waves/planner/").status_code == 403
    assert not Decision.objects.exclude(kind="propose").exists()


def test_the_planner_previews_then_saves(client_for, officer, org_a):
    settings = ProgrammeSettings.load()
    settings.planning_horizon_days = 14
    settings.save()
    ready_mailboxes(org_a, 4)
    client = client_for(officer)
    page = client.get("/waves/planner/").content.decode()
    assert "Preview the plan" in page and "Create pilot wave" in page
    preview = client.get("/waves/planner/?start_day=1&start_month=6&start_year=2026", **HTMX).content.decode()
    assert "Forecast finish" in preview and "Save these 1 draft waves" in preview
    assert not Wave.objects.exists()
    fingerprint = preview.split('name="fingerprint" value="')[1].split('"')[0]
    response = client.post("/waves/planner/commit/", {"start": "2026-06-01", "fingerprint": fingerprint})
    assert response.status_code == 302
    assert Wave.objects.get().planned_mailboxes == 4


def test_moving_an_organisation_from_the_page(client_for, officer, org_a, org_b):
    ready_mailboxes(org_a, 3)
    ready_mailboxes(org_b, 2)
    first = wave_with(org_a, capacity=4)
    second = wave_with(org_b, name="Second", day=dt.date(2026, 6, 2))
    client = client_for(officer)
    page = client.post(
        f"/waves/{second.pk}/move/", {"organisation": "RRV", "target": first.pk}
    ).content.decode()
    assert "Check this move" in page and "over its capacity of 4" in page
    response = client.post(
        f"/waves/{second.pk}/move/", {"organisation": "RRV", "target": first.pk, "confirm": "1"}
    )
    assert response.status_code == 302
    assert Wave.objects.get(pk=first.pk).planned_mailboxes == 5


def test_moving_a_mailbox_from_the_page_confirms_then_keeps_the_warnings(client_for, officer, org_a, org_b):
    ready_mailboxes(org_a, 4)
    [mover] = ready_mailboxes(org_b, 1)
    first = wave_with(org_a, capacity=4)
    second = wave_with(org_b, name="Second", day=dt.date(2026, 6, 2))
    client = client_for(officer)
    page = client.post(
        f"/waves/{second.pk}/move-mailbox/", {"email": mover.email, "target": first.pk}
    ).content.decode()
    assert "Check this move" in page and "over its capacity of 4" in page
    response = client.post(
        f"/waves/{second.pk}/move-mailbox/",
        {"email": mover.email, "target": first.pk, "confirm": "1"},
        follow=True,
    )
    page = response.content.decode()
    assert f"{mover.email} moved to {first.name}" in page
    assert "over its capacity of 4" in page  # the warning the mover accepted stays on record
    assert Wave.objects.get(pk=first.pk).planned_mailboxes == 5


def test_a_pilot_from_the_page(client_for, officer, org_a):
    ready_mailboxes(org_a, 10)
    client = client_for(officer)
    response = client.post(
        "/waves/pilot/",
        {
            "starts_on_day": "1",
            "starts_on_month": "6",
            "starts_on_year": "2026",
            "kind": "evening",
            "organisations": "rj1",
            "per_organisation": "3",
        },
    )
    assert response.status_code == 302
    assert Wave.objects.get(is_pilot=True).planned_mailboxes == 3
    response = client.post(
        "/waves/pilot/",
        {
            "starts_on_day": "1",
            "starts_on_month": "6",
            "starts_on_year": "2026",
            "kind": "evening",
            "organisations": "NOPE1",
            "per_organisation": "3",
        },
    )
    assert response.status_code == 400 and "No organisation with ODS code NOPE1" in response.content.decode()


def test_the_programme_office_edits_windows_and_closed_dates(client_for, officer, admin_a, viewer):
    client = client_for(officer)
    page = client.get("/waves/settings/").content.decode()
    assert "Windows and planning rules" in page and 'value="22000"' in page
    data = {
        f"settings-{k}": v
        for k, v in {
            "evening_days": ["0", "1", "2", "3"],
            "evening_starts": "19:00",
            "evening_ends": "06:00",
            "evening_capacity_mailboxes": "20000",
            "evening_capacity_amount": "30",
            "evening_capacity_unit": "TB",
            "weekend_start_day": "4",
            "weekend_starts": "18:00",
            "weekend_end_day": "0",
            "weekend_ends": "06:00",
            "weekend_capacity_mailboxes": "83000",
            "weekend_capacity_amount": "110",
            "weekend_capacity_unit": "TB",
            "single_wave_organisation_max": "5000",
            "large_organisation_chunk": "2000",
            "pilot_mailboxes_per_organisation": "5",
            "planning_horizon_days": "365",
            "four_eyes": "",  # no longer a setting a member can change: ignored
            "required_gates": ["gate_mfa_enforced", "gate_acceptable_use"],
            "readiness_recheck_hours": "48",
        }.items()
    }
    assert client.post("/waves/settings/", data).status_code == 302
    settings = ProgrammeSettings.load()
    assert settings.required_gates == ["gate_mfa_enforced", "gate_acceptable_use"]
    assert settings.readiness_recheck_hours == 48
    assert settings.evening_capacity_mailboxes == 20000 and settings.evening_starts == dt.time(19)
    assert not settings.go_required_from_every_organisation
    response = client.post(
        "/waves/settings/",
        {
            "closed-kind": "bank_holiday",
            "closed-name": "Christmas Day",
            "closed-starts_on_day": "25",
            "closed-starts_on_month": "12",
            "closed-starts_on_year": "2030",
            "closed-ends_on_day": "25",
            "closed-ends_on_month": "12",
            "closed-ends_on_year": "2030",
        },
    )
    assert response.status_code == 302
    assert "Christmas Day" in client.get("/waves/settings/").content.decode()
    for user in (admin_a, viewer):
        assert client_for(user).get("/waves/settings/").status_code == 403


def test_only_the_programme_office_moves_or_pilots(client_for, wave, admin_a, viewer):
    other = wave_with(name="Other", day=dt.date(2030, 6, 4))
    for user in (admin_a, viewer):
        client = client_for(user)
        assert (
            client.post(f"/waves/{wave.pk}/move/", {"organisation": "RJ1", "target": other.pk}).status_code
            == 403
        )
        assert (
            client.post(f"/waves/{wave.pk}/move-mailbox/", {"email": "x@y", "target": other.pk}).status_code
            == 403
        )
        assert client.post("/waves/pilot/", {}).status_code == 403
        assert client.post("/waves/planner/commit/", {"start": "2030-06-03"}).status_code == 403
    assert not Wave.objects.filter(is_pilot=True).exists()
    assert Wave.objects.get(pk=other.pk).planned_mailboxes == 0


def test_the_confirmation_is_not_offered_to_those_who_would_be_refused(
    client_for, wave, officer, admin_a, viewer
):
    client_for(officer).post(f"/waves/{wave.pk}/propose/", {"confirmed": "1"})
    watcher = client_for(viewer)
    for url in [
        f"/waves/{wave.pk}/pause/",
        f"/waves/{wave.pk}/cancel/",
        f"/waves/{wave.pk}/no-go/?organisation=RJ1",
    ]:
        response = watcher.get(url)
        assert response.status_code == 403 and "Yes, " not in response.content.decode(), url
    assert client_for(admin_a).get(f"/waves/{wave.pk}/cancel/").status_code == 403
    assert (
        "Yes, no-go" in client_for(admin_a).get(f"/waves/{wave.pk}/no-go/?organisation=RJ1").content.decode()
    )
    assert "Yes, cancel" in client_for(officer).get(f"/waves/{wave.pk}/cancel/").content.decode()


def test_the_programme_office_says_go_on_a_trusts_behalf_only_with_a_reason(client, wave, officer, approver):
    client.force_login(officer)
    client.post(f"/waves/{wave.pk}/propose/", {"confirmed": "1"})
    client.force_login(approver)
    page = client.get(f"/waves/{wave.pk}/").content.decode()
    assert "Go on its behalf" in page
    confirm = client.post(
        f"/waves/{wave.pk}/go/", {"organisation": "RJ1", "confirmed": "1"}, **HTMX
    ).content.decode()
    assert "Give a reason for the go on the organisation" in confirm
    assert not Decision.objects.filter(kind="go").exists()
    panel = client.post(
        f"/waves/{wave.pk}/go/",
        {"organisation": "RJ1", "confirmed": "1", "reason": "confirmed by phone with the trust's IT lead"},
        **HTMX,
    ).content.decode()
    assert "on the organisation&#39;s behalf" in panel or "on the organisation's behalf" in panel
    decision = Decision.objects.get(kind="go")
    assert decision.on_behalf and decision.reason == "confirmed by phone with the trust's IT lead"
    listed = client.get(f"/api/v1/decisions/?wave={wave.pk}").json()["results"]
    assert [d["on_behalf"] for d in listed if d["kind"] == "go"] == [True]
