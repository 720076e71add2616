"""The wave API: the same roles and scoping as the pages, one service per action."""

import datetime as dt

import pytest

from migrations_app.models import Decision, Mailbox, ProgrammeSettings, Wave
from tests.factories import OrganisationFactory
from tests.wave_fixtures import ready_mailboxes, wave_with


@pytest.fixture
def wave(db, org_a, org_b):
    ready_mailboxes(org_a, 3)
    ready_mailboxes(org_b, 2)
    return wave_with(org_a, org_b)


@pytest.fixture
def other_wave(db):
    outsider = OrganisationFactory(ods_code="ZZZ1")
    ready_mailboxes(outsider, 1)
    return wave_with(outsider, name="Outsiders", day=dt.date(2026, 6, 2))


def post(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


def test_it_needs_a_signed_in_user(client, wave):
    response = client.get("/api/v1/waves/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"


def test_list_filters_and_scopes(client_for, wave, other_wave, officer, admin_a):
    body = client_for(officer).get("/api/v1/waves/").json()
    assert [w["name"] for w in body["results"]] == [wave.name, "Outsiders"]
    assert client_for(officer).get("/api/v1/waves/?status=proposed").json()["results"] == []
    assert len(client_for(officer).get("/api/v1/waves/?kind=evening").json()["results"]) == 2
    # a trust admin sees only the waves their organisations are in
    body = client_for(admin_a).get("/api/v1/waves/").json()
    assert [w["id"] for w in body["results"]] == [wave.pk]
    assert client_for(admin_a).get(f"/api/v1/waves/{other_wave.pk}/").status_code == 404


def test_detail_shows_totals_and_only_the_callers_organisations(client_for, wave, officer, admin_a):
    body = client_for(officer).get(f"/api/v1/waves/{wave.pk}/").json()
    assert body["totals"] == {"mailboxes": 5, "bytes": 5_000_000}
    assert {o["ods_code"] for o in body["organisations"]} == {"RJ1", "RRV"}
    body = client_for(admin_a).get(f"/api/v1/waves/{wave.pk}/").json()
    assert [o["ods_code"] for o in body["organisations"]] == ["RJ1"]


def test_mailboxes_of_a_wave_are_scoped(client_for, wave, officer, admin_a):
    assert len(client_for(officer).get(f"/api/v1/waves/{wave.pk}/mailboxes/").json()["results"]) == 5
    rows = client_for(admin_a).get(f"/api/v1/waves/{wave.pk}/mailboxes/").json()["results"]
    assert {r["organisation"] for r in rows} == {"RJ1"} and len(rows) == 3


def test_the_whole_workflow_through_the_api(client, wave, officer, approver, admin_a, admin_b):
    client.force_login(officer)
    assert post(client, f"/api/v1/waves/{wave.pk}/propose/").json()["status"] == "proposed"
    client.force_login(admin_a)
    assert post(client, f"/api/v1/waves/{wave.pk}/go/", {"organisation": "RJ1"}).status_code == 200
    client.force_login(admin_b)
    assert (
        post(client, f"/api/v1/waves/{wave.pk}/go/", {"organisation": "rrv", "reason": "ok"}).status_code
        == 200
    )
    client.force_login(officer)
    response = post(client, f"/api/v1/waves/{wave.pk}/approve/")
    assert response.status_code == 403 and "another member" in response.json()["detail"]
    client.force_login(approver)
    assert post(client, f"/api/v1/waves/{wave.pk}/approve/").json()["status"] == "approved"
    assert Mailbox.objects.filter(wave=wave, state="scheduled").count() == 5
    response = post(client, f"/api/v1/waves/{wave.pk}/approve/")
    assert response.status_code == 409
    assert post(client, f"/api/v1/waves/{wave.pk}/pause/").status_code == 400  # a reason is needed
    assert (
        post(client, f"/api/v1/waves/{wave.pk}/pause/", {"reason": "Incident"}).json()["status"] == "paused"
    )
    assert post(client, f"/api/v1/waves/{wave.pk}/resume/").json()["status"] == "approved"
    decisions = client.get(f"/api/v1/decisions/?wave={wave.pk}").json()["results"]
    assert [d["kind"] for d in decisions] == ["propose", "go", "go", "approve", "pause", "resume"]


def test_a_trust_admin_cannot_approve_or_answer_for_another_organisation(client_for, wave, officer, admin_a):
    post(client_for(officer), f"/api/v1/waves/{wave.pk}/propose/")
    client = client_for(admin_a)
    assert post(client, f"/api/v1/waves/{wave.pk}/approve/").status_code == 403
    assert post(client, f"/api/v1/waves/{wave.pk}/reject/", {"reason": "no"}).status_code == 403
    assert post(client, f"/api/v1/waves/{wave.pk}/cancel/", {"reason": "no"}).status_code == 403
    # RRV is not theirs: not even visible to them, so 404
    assert (
        post(client, f"/api/v1/waves/{wave.pk}/no-go/", {"organisation": "RRV", "reason": "x"}).status_code
        == 404
    )
    assert not Decision.objects.filter(kind__in=["go", "no_go", "approve"]).exists()


def test_a_viewer_cannot_act(client_for, wave, officer, viewer):
    post(client_for(officer), f"/api/v1/waves/{wave.pk}/propose/")
    client = client_for(viewer)
    assert client.get(f"/api/v1/waves/{wave.pk}/").status_code == 200
    for action, data in [
        ("go", {"organisation": "RJ1"}),
        ("no-go", {"organisation": "RJ1", "reason": "x"}),
        ("approve", {}),
        ("pause", {"reason": "x"}),
    ]:
        assert post(client, f"/api/v1/waves/{wave.pk}/{action}/", data).status_code == 403
    assert post(client, "/api/v1/planner/preview/", {"start": "2026-06-01"}).status_code == 403


def test_no_go_needs_a_reason_and_removes_the_organisation(client_for, wave, officer, admin_b):
    post(client_for(officer), f"/api/v1/waves/{wave.pk}/propose/")
    client = client_for(admin_b)
    response = post(client, f"/api/v1/waves/{wave.pk}/no-go/", {"organisation": "RRV"})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["reason"]
    response = post(client, f"/api/v1/waves/{wave.pk}/no-go/", {"organisation": "RRV", "reason": "Go-live"})
    # a trust sees only its own organisations' share of a shared wave: RRV's is gone
    assert response.status_code == 200 and response.json()["planned_mailboxes"] == 0
    office = client_for(officer).get(f"/api/v1/waves/{wave.pk}/").json()
    assert office["planned_mailboxes"] == 3  # RJ1's three remain


def test_decisions_are_scoped(client_for, wave, officer, admin_a, admin_b):
    post(client_for(officer), f"/api/v1/waves/{wave.pk}/propose/")
    post(client_for(admin_b), f"/api/v1/waves/{wave.pk}/go/", {"organisation": "RRV"})
    kinds = [
        (d["kind"], d["organisation"])
        for d in client_for(admin_a).get("/api/v1/decisions/").json()["results"]
    ]
    assert kinds == [("propose", None)]  # not RRV's go


def test_planner_preview_and_commit(client_for, officer, admin_a, org_a):
    settings = ProgrammeSettings.load()
    settings.evening_capacity_mailboxes = 4
    settings.planning_horizon_days = 14
    settings.save()
    ready_mailboxes(org_a, 3)
    huge = OrganisationFactory(ods_code="HUGE2")
    ready_mailboxes(huge, 90, group="EVERYONE")  # larger than a weekend
    settings.weekend_capacity_mailboxes = 50
    settings.save()
    client = client_for(officer)
    preview = client.get("/api/v1/planner/preview/?start=2026-06-01").json()
    assert preview["mailboxes"] == 3 and len(preview["waves"]) == 1
    assert (
        preview["unplaced"][0]["organisations"] == ["HUGE2"]
        and preview["unplaced"][0]["reason"] == "too_large"
    )
    assert preview["forecast_finish"].startswith("2026-06-02T05:00")  # 06:00 BST
    assert not Wave.objects.exists()
    response = post(client, "/api/v1/planner/commit/", {"start": "2026-06-01", "fingerprint": "stale"})
    assert response.status_code == 409
    response = post(
        client, "/api/v1/planner/commit/", {"start": "2026-06-01", "fingerprint": preview["fingerprint"]}
    )
    assert response.status_code == 201 and response.json()["waves"][0]["planned_mailboxes"] == 3
    assert post(client_for(admin_a), "/api/v1/planner/commit/", {"start": "2026-06-01"}).status_code == 403


def test_move_organisation_warns_then_moves(client_for, officer, org_a, org_b):
    ready_mailboxes(org_a, 3)
    ready_mailboxes(org_b, 2)
    first = wave_with(org_a, capacity=4)
    second = wave_with(org_b, name="Second", day=dt.date(2026, 6, 2))
    client = client_for(officer)
    url = f"/api/v1/waves/{second.pk}/move-organisation/"
    response = post(client, url, {"organisation": "RRV", "target": first.pk})
    assert response.status_code == 409 and "over its capacity of 4" in response.json()["warnings"][0]
    response = post(client, url, {"organisation": "RRV", "target": first.pk, "confirm": True})
    assert response.json()["moved"] is True


def test_pilot_wave(client_for, officer, org_a):
    ready_mailboxes(org_a, 10)
    client = client_for(officer)
    response = post(
        client, "/api/v1/planner/pilot/", {"starts_on": "2026-06-01", "organisations": ["RJ1", "NOPE"]}
    )
    assert response.status_code == 400
    response = post(
        client,
        "/api/v1/planner/pilot/",
        {"starts_on": "2026-06-01", "organisations": ["rj1"], "per_organisation": 4},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["is_pilot"] is True and body["planned_mailboxes"] == 4
