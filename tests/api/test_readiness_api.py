"""The readiness API: start and poll a check, the mailbox's readiness fields and filters, retire and reinstate,
close an organisation, the organisation's stage and missing gates; every refusal problem+json."""

from migrations_app.models import ImportJob, Mailbox, Organisation, ReadinessCheck
from tests.readiness_fixtures import inventoried
from tests.wave_fixtures import wave_with

M = Mailbox.State


def _post(client, path, body=None):
    return client.post(path, body or {}, content_type="application/json")


def test_starting_a_check_answers_202_with_the_check_to_poll(
    api, org_a, admin_a, preflight_rates, django_capture_on_commit_callbacks
):
    preflight_rates({"NOT_LICENSED": 0.5})
    inventoried(org_a, 6)
    client = api(admin_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, "/api/v1/organisations/rj1/readiness-checks/")
    assert response.status_code == 202
    check = ReadinessCheck.objects.get()
    assert response["Location"] == f"/api/v1/readiness-checks/{check.pk}/"
    body = client.get(response["Location"]).json()
    assert body["status"] == "succeeded" and body["organisation"] == "RJ1"
    assert body["counts"]["ready"] + body["counts"]["blocked"] == 6 and body["percent"] == 100
    blocked = client.get("/api/v1/mailboxes/?organisation=RJ1&blocked_code=NOT_LICENSED").json()["results"]
    assert len(blocked) == body["counts"]["blocked"]
    assert all(b["state"] == "blocked" and b["blocked_reason"] for b in blocked)
    never = client.get("/api/v1/mailboxes/?organisation=RJ1&never_checked=true").json()["results"]
    assert never == []


def test_a_queued_check_reports_queued(api, org_a, admin_a):
    check = ReadinessCheck.objects.create(organisation=org_a, status="queued")
    assert api(admin_a).get(f"/api/v1/readiness-checks/{check.pk}/").json()["status"] == "queued"


def test_another_organisations_admin_cannot_check_or_read_its_checks(api, org_a, admin_b):
    check = ReadinessCheck.objects.create(organisation=org_a, status="running")
    client = api(admin_b)
    response = _post(client, "/api/v1/organisations/RJ1/readiness-checks/")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
    assert client.get(f"/api/v1/readiness-checks/{check.pk}/").status_code == 404
    assert ReadinessCheck.objects.count() == 1


def test_a_trust_admin_cannot_check_another_organisations_mailboxes_through_their_own(
    api, org_a, org_b, admin_a
):
    [theirs] = inventoried(org_b, 1)
    response = _post(api(admin_a), "/api/v1/organisations/RJ1/readiness-checks/", {"mailboxes": [theirs.pk]})
    assert response.status_code == 403 and response.json()["status"] == 403
    assert not ReadinessCheck.objects.exists()


def test_a_read_only_token_cannot_start_a_check(api, org_a, admin_a):
    response = _post(api(admin_a, scopes=("read",)), "/api/v1/organisations/RJ1/readiness-checks/")
    assert response.status_code == 403
    assert not ReadinessCheck.objects.exists()


def test_retire_and_reinstate(api, org_a, admin_a):
    [box] = inventoried(org_a, 1)
    client = api(admin_a)
    response = _post(client, f"/api/v1/mailboxes/{box.pk}/retire/")
    assert response.status_code == 400 and "reason" in str(response.json())
    assert (
        _post(client, f"/api/v1/mailboxes/{box.pk}/retire/", {"reason": "left"}).json()["state"] == "retired"
    )
    assert (
        _post(client, f"/api/v1/mailboxes/{box.pk}/reinstate/", {"reason": "back"}).json()["state"]
        == "inventoried"
    )


def test_retiring_a_mailbox_in_flight_is_refused(api, org_a, admin_a):
    [box] = inventoried(org_a, 1)
    Mailbox.objects.filter(pk=box.pk).update(wave=wave_with(org_a, status="running"), state=M.SYNCING)
    response = _post(api(admin_a), f"/api/v1/mailboxes/{box.pk}/retire/", {"reason": "left"})
    assert response.status_code == 400 and "being moved" in response.json()["detail"]


def test_another_organisations_admin_cannot_retire(api, org_a, admin_b):
    [box] = inventoried(org_a, 1)
    assert _post(api(admin_b), f"/api/v1/mailboxes/{box.pk}/retire/", {"reason": "x"}).status_code == 404
    box.refresh_from_db()
    assert box.state == M.INVENTORIED


def test_the_organisation_shows_its_stage_and_missing_gates(api, org_a, admin_a, officer):
    Organisation.objects.filter(pk=org_a.pk).update(gate_mfa_enforced=False, stage="readiness")
    body = api(admin_a).get("/api/v1/organisations/RJ1/").json()
    assert (body["stage"], body["missing_gates"]) == ("readiness", ["gate_mfa_enforced"])
    assert [
        o["ods_code"] for o in api(officer).get("/api/v1/organisations/?stage=readiness").json()["results"]
    ] == ["RJ1"]


def test_only_the_programme_office_closes(api, org_a, admin_a, officer):
    Organisation.objects.filter(pk=org_a.pk).update(stage="mop_up")
    assert _post(api(admin_a), "/api/v1/organisations/RJ1/close/", {"reason": "x"}).status_code == 403
    response = _post(api(officer), "/api/v1/organisations/RJ1/close/", {"reason": "all moved"})
    assert response.status_code == 200 and response.json()["stage"] == "closed"


def test_the_preview_lists_left_out_organisations(api, officer, org_a):
    inventoried(org_a, 2)
    body = _post(api(officer), "/api/v1/planner/preview/", {"start": "2026-06-01"}).json()
    assert body["left_out"] == [
        {
            "ods_code": "RJ1",
            "name": org_a.name,
            "mailboxes": 2,
            "reasons": [
                {
                    "code": "NOT_CHECKED",
                    "message": "2 mailbox(es) inventoried but not checked yet: run the readiness check",
                    "mailboxes": 2,
                }
            ],
        }
    ]


def test_a_complete_inventory_previews_its_leavers_then_retires_them_when_confirmed(
    api, org_a, admin_a, admin_b
):
    for email in ("stays@rj1.nhs.uk", "left@rj1.nhs.uk"):
        Mailbox.objects.create(organisation=org_a, email=email)
    client = api(admin_a)
    rows = [
        {
            "email": "stays@rj1.nhs.uk",
            "display_name": "S",
            "kind": "user",
            "size_bytes": 1,
            "item_count": 1,
            "affinity_group": "",
        }
    ]
    body = client.post(
        "/api/v1/organisations/RJ1/mailboxes/bulk?complete=true", rows, content_type="application/json"
    ).json()
    assert [m["email"] for m in body["leavers"]["retirable"]] == ["left@rj1.nhs.uk"]
    job = ImportJob.objects.get()
    assert (
        api(admin_b)
        .post(
            f"/api/v1/import-jobs/{job.pk}/retire-leavers/", {"reason": "x"}, content_type="application/json"
        )
        .status_code
        == 404
    )
    done = client.post(
        f"/api/v1/import-jobs/{job.pk}/retire-leavers/",
        {"reason": "leavers"},
        content_type="application/json",
    ).json()
    assert done["retired"] == 1
    assert Mailbox.objects.get(email="left@rj1.nhs.uk").state == M.RETIRED
