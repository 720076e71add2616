"""The readiness parts of the pages: run the check from the organisation page and watch it, blocked mailboxes by
reason (filter, CSV), a mailbox's last check, retire and bring back, close an organisation; permissions."""

import csv
import io

from migrations_app.models import Event, Mailbox, Organisation, ReadinessCheck
from tests.readiness_fixtures import inventoried

M = Mailbox.State


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))


def test_a_trust_admin_runs_the_check_and_sees_blocked_mailboxes_by_reason(
    client_for, org_a, admin_a, preflight_rates, django_capture_on_commit_callbacks
):
    preflight_rates({"NOT_LICENSED": 0.3, "TARGET_MISSING": 0.1})
    inventoried(org_a, 30)
    client = client_for(admin_a)
    page = client.get(f"/organisations/{org_a.ods_code}/").content.decode()
    assert "Run the readiness check" in page and "Not checked yet" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/organisations/{org_a.ods_code}/readiness-check/")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    check = ReadinessCheck.objects.get()
    assert f"{check.ready} ready, {check.blocked} blocked" in page
    assert "No Exchange Online licence" in page
    assert "assign one in the Microsoft 365 admin centre, then check again" in page
    assert "Check again" in page
    blocked = Mailbox.objects.filter(state=M.BLOCKED, blocked_code="NOT_LICENSED")
    page = client.get(f"/organisations/{org_a.ods_code}/?blocked_code=NOT_LICENSED").content.decode()
    filtered = page.split('id="blocked-mailboxes"')[1].split("</table>")[0]
    for m in blocked:
        assert m.email in filtered
    for m in Mailbox.objects.filter(blocked_code="TARGET_MISSING"):
        assert f">{m.email}<" not in filtered
    rows = _csv(client.get(f"/organisations/{org_a.ods_code}/blocked.csv?blocked_code=NOT_LICENSED"))
    assert rows[0][:5] == ["email", "display_name", "ods_code", "blocked_code", "why"]
    assert sorted(r[0] for r in rows[1:]) == sorted(blocked.values_list("email", flat=True))
    assert {r[4] for r in rows[1:]} == {"No Exchange Online licence"}


def test_the_progress_fragment_polls_while_running_and_reloads_when_done(client_for, org_a, admin_a):
    check = ReadinessCheck.objects.create(organisation=org_a, status="running", total=10, ready=4, blocked=1)
    client = client_for(admin_a)
    fragment = client.get(f"/readiness-checks/{check.pk}/progress/", HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 2s"' in fragment.content.decode()
    assert 'aria-valuenow="50"' in fragment.content.decode()
    ReadinessCheck.objects.filter(pk=check.pk).update(status="succeeded", ready=9)
    done = client.get(f"/readiness-checks/{check.pk}/progress/", HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"


def test_another_organisations_admin_cannot_check_or_see_its_check(client_for, org_a, admin_b):
    check = ReadinessCheck.objects.create(organisation=org_a, status="running", total=1)
    client = client_for(admin_b)
    assert client.post(f"/organisations/{org_a.ods_code}/readiness-check/").status_code == 404
    assert client.get(f"/readiness-checks/{check.pk}/progress/").status_code == 404
    assert client.get(f"/organisations/{org_a.ods_code}/blocked.csv").status_code == 404
    assert ReadinessCheck.objects.count() == 1


def test_a_viewer_sees_no_check_button_and_cannot_start_one(client_for, org_a, viewer):
    client = client_for(viewer)
    assert "Run the readiness check" not in client.get(f"/organisations/{org_a.ods_code}/").content.decode()
    assert client.post(f"/organisations/{org_a.ods_code}/readiness-check/").status_code == 403


def test_the_page_names_the_missing_required_gates(client_for, org_a, admin_a):
    Organisation.objects.filter(pk=org_a.pk).update(gate_mfa_enforced=False)
    page = client_for(admin_a).get(f"/organisations/{org_a.ods_code}/").content.decode()
    assert "leaves RJ1 out until these gates are met: Multi-factor sign-in enforced" in page


def test_a_blocked_mailbox_page_says_why_and_what_to_do(client_for, org_a, admin_a):
    [box] = inventoried(org_a, 1)
    Mailbox.objects.filter(pk=box.pk).update(
        state=M.BLOCKED,
        blocked_code="OVER_QUOTA",
        blocked_reason="mailbox is 60 GB, the target holds 50 GB",
        checked_at="2026-05-01T10:00Z",
    )
    page = client_for(admin_a).get(f"/mailboxes/{box.pk}/").content.decode()
    assert "Blocked: Too big for the target mailbox" in page
    assert "raise the target&#39;s quota" in page or "raise the target's quota" in page
    assert "mailbox is 60 GB, the target holds 50 GB" in page


def test_a_trust_admin_retires_and_brings_back_a_mailbox(client_for, org_a, admin_a):
    [box] = inventoried(org_a, 1)
    client = client_for(admin_a)
    assert "Retire: never move this mailbox" in client.get(f"/mailboxes/{box.pk}/").content.decode()
    client.post(f"/mailboxes/{box.pk}/retire/", {"reason": "left the trust"})
    box.refresh_from_db()
    assert box.state == M.RETIRED
    assert Event.objects.filter(action="mailbox.retired", mailbox=box, message="left the trust").exists()
    page = client.get(f"/mailboxes/{box.pk}/").content.decode()
    assert "Bring it back into the inventory" in page
    client.post(f"/mailboxes/{box.pk}/reinstate/", {"reason": "came back"})
    box.refresh_from_db()
    assert box.state == M.INVENTORIED


def test_retiring_needs_a_reason(client_for, org_a, admin_a):
    [box] = inventoried(org_a, 1)
    response = client_for(admin_a).post(f"/mailboxes/{box.pk}/retire/", {"reason": ""}, follow=True)
    assert "Give a reason to retire the mailbox" in response.content.decode()
    box.refresh_from_db()
    assert box.state == M.INVENTORIED


def test_another_organisations_admin_cannot_retire(client_for, org_a, admin_b):
    [box] = inventoried(org_a, 1)
    assert client_for(admin_b).post(f"/mailboxes/{box.pk}/retire/", {"reason": "x"}).status_code == 404
    box.refresh_from_db()
    assert box.state == M.INVENTORIED


def test_another_organisations_admin_cannot_bring_a_retired_mailbox_back(client_for, org_a, admin_b):
    [box] = inventoried(org_a, 1)
    Mailbox.objects.filter(pk=box.pk).update(state=M.RETIRED)
    assert client_for(admin_b).post(f"/mailboxes/{box.pk}/reinstate/", {"reason": "x"}).status_code == 404
    box.refresh_from_db()
    assert box.state == M.RETIRED


def test_a_viewer_sees_the_mailbox_but_may_neither_retire_nor_bring_back(client_for, org_a, viewer):
    [box] = inventoried(org_a, 1)
    client = client_for(viewer)
    assert "Retire: never move this mailbox" not in client.get(f"/mailboxes/{box.pk}/").content.decode()
    assert client.post(f"/mailboxes/{box.pk}/retire/", {"reason": "x"}).status_code == 403
    Mailbox.objects.filter(pk=box.pk).update(state=M.RETIRED)
    assert client.post(f"/mailboxes/{box.pk}/reinstate/", {"reason": "x"}).status_code == 403
    box.refresh_from_db()
    assert box.state == M.RETIRED


def test_retiring_is_a_post_only(client_for, org_a, admin_a):
    [box] = inventoried(org_a, 1)
    assert client_for(admin_a).get(f"/mailboxes/{box.pk}/retire/").status_code == 405
    box.refresh_from_db()
    assert box.state == M.INVENTORIED


def test_the_programme_office_closes_an_organisation_with_everything_moved(client_for, org_a, officer):
    Organisation.objects.filter(pk=org_a.pk).update(stage="mop_up")
    [box] = inventoried(org_a, 1)
    client = client_for(officer)
    response = client.post(f"/organisations/{org_a.ods_code}/close/", {"reason": "done"}, follow=True)
    assert "still has 1 mailbox(es) neither migrated nor retired" in response.content.decode()
    Mailbox.objects.filter(pk=box.pk).update(state=M.MIGRATED)
    assert "Close RJ1" in client.get(f"/organisations/{org_a.ods_code}/").content.decode()
    client.post(f"/organisations/{org_a.ods_code}/close/", {"reason": "all moved, signed off"})
    org_a.refresh_from_db()
    assert org_a.stage == "closed"
    assert Event.objects.filter(
        action="organisation.stage_changed", to_state="closed", message="all moved, signed off"
    ).exists()


def test_a_trust_admin_cannot_close_their_organisation(client_for, org_a, admin_a):
    Organisation.objects.filter(pk=org_a.pk).update(stage="mop_up")
    assert (
        client_for(admin_a).post(f"/organisations/{org_a.ods_code}/close/", {"reason": "x"}).status_code
        == 403
    )
    org_a.refresh_from_db()
    assert org_a.stage == "mop_up"


def test_the_planner_preview_lists_every_organisation_left_out_and_why(client_for, officer, org_a, org_b):
    from tests.factories import OrganisationFactory
    from tests.wave_fixtures import ready_mailboxes

    inventoried(org_a, 8)  # enrolled, imported, not checked: the journey the issue saw
    ready_mailboxes(org_b, 3, state=M.BLOCKED)
    Mailbox.objects.filter(organisation=org_b).update(blocked_code="NOT_LICENSED")
    gated = OrganisationFactory(ods_code="RGT", gate_service_desk_briefed=False)
    ready_mailboxes(gated, 4)
    page = (
        client_for(officer).get("/waves/planner/?start_day=1&start_month=6&start_year=2026").content.decode()
    )
    table = page.split('id="left-out-table"')[1].split("</table>")[0]
    assert "8 mailbox(es) inventoried but not checked yet: run the readiness check" in table
    assert "3 blocked: No Exchange Online licence: assign one in the Microsoft 365 admin centre" in table
    assert "Readiness gates not met: Local service desk briefed" in table
    assert "3 organisations, 15 mailboxes" in page


def test_the_organisation_list_shows_and_filters_by_stage(client_for, officer, org_a, org_b):
    Organisation.objects.filter(pk=org_b.pk).update(stage="pilot")
    client = client_for(officer)
    page = client.get("/organisations/").content.decode()
    assert "Pilot" in page and "Enrolled" in page
    filtered = client.get("/organisations/?stage=pilot").content.decode()
    assert "RRV" in filtered and ">RJ1<" not in filtered
