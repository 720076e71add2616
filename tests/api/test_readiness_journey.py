"""The main journey through the API alone, as a script would drive it: a new trust enrols, uploads its
inventory, runs the readiness check, reads its blocked mailboxes with their reasons, fixes one and checks it
again, and is offered to the planner; the programme office plans, the trust says go, a second person
approves, and the wave runs to the end (the workers' tasks run eagerly here; the window is opened by moving
its times to now, as the clock would)."""

import datetime as dt

from django.utils import timezone

from migrations_app.engines import EndpointSpec, MailboxSpec
from migrations_app.engines.simulated import SimulatedEngine
from migrations_app.models import Event, Mailbox, Organisation, Wave
from migrations_app.services.execution import wave_tick
from migrations_app.services.readiness.stages import organisations_mop_up_review
from tests.factories import UserFactory

RATES = {"TARGET_MISSING": 0.3}
GATES = ["gate_mfa_enforced", "gate_acceptable_use", "gate_licences_assigned", "gate_service_desk_briefed"]


def _json(client, method, path, body=None, expect=200):
    response = getattr(client, method)(path, body, content_type="application/json")
    assert response.status_code == expect, (path, response.status_code, response.content[:500])
    return response


def _ready_upn(email: str, pk: int) -> str:
    """A target UPN the simulated target knows (what the trust's fix in Microsoft 365 amounts to)."""
    engine = SimulatedEngine(instant=True, preflight_rates=RATES)
    for n in range(100):
        upn = f"{email.split('@')[0]}.{n}@nhs.net"
        spec = MailboxSpec(
            email, EndpointSpec("simulated"), EndpointSpec("simulated"), target_user=upn, seed=pk
        )
        if engine.preflight(spec).ok:
            return upn
    raise AssertionError("no UPN passes")


def test_a_new_trust_reaches_a_wave_through_the_api_alone(
    api, officer, approver, settings, django_capture_on_commit_callbacks
):
    settings.MIGRATION_ENGINE_OPTIONS = {
        **settings.MIGRATION_ENGINE_OPTIONS,
        "simulated": {"instant": True, "preflight_rates": RATES},
    }
    trust = api(UserFactory(username="newtrust", role="trust_admin"))
    office = api(officer)
    second = api(approver, scopes=("read", "write", "approve"))

    # enrol, with every readiness gate met
    _json(
        trust,
        "post",
        "/api/v1/organisations/",
        {
            "ods_code": "RXX",
            "name": "New Trust",
            "kind": "trust",
            "region": "london",
            "primary_contact": {"name": "Ann Admin", "email": "ann@rxx.nhs.uk"},
            "gates": GATES,
        },
        expect=201,
    )
    # the inventory: eight mailboxes
    rows = [
        {"email": f"p{n}@rxx.nhs.uk", "display_name": f"P {n}", "kind": "user", "size_bytes": 10_000_000,
         "item_count": 100, "affinity_group": ""}
        for n in range(8)
    ]  # fmt: skip
    _json(trust, "post", "/api/v1/organisations/RXX/mailboxes/bulk", rows)
    org = trust.get("/api/v1/organisations/RXX/").json()
    assert (org["stage"], org["missing_gates"]) == ("readiness", [])

    # nothing checked yet: the planner says so rather than "0 mailboxes"
    preview = _json(office, "post", "/api/v1/planner/preview/", {"start": "2026-06-01"}).json()
    [left] = [item for item in preview["left_out"] if item["ods_code"] == "RXX"]
    assert left["mailboxes"] == 8 and left["reasons"][0]["code"] == "NOT_CHECKED"

    # the readiness check: 202, then poll its Location
    with django_capture_on_commit_callbacks(execute=True):
        started = _json(trust, "post", "/api/v1/organisations/RXX/readiness-checks/", {}, expect=202)
    check = trust.get(started["Location"]).json()
    assert check["status"] == "succeeded" and check["total"] == 8
    blocked = trust.get("/api/v1/mailboxes/?organisation=RXX&state=blocked").json()["results"]
    assert len(blocked) == check["counts"]["blocked"] > 0
    assert {b["blocked_code"] for b in blocked} == {"TARGET_MISSING"}
    assert blocked[0]["blocked_advice"].startswith("No target mailbox:")
    assert blocked[0]["checked_at"]

    # fix one: its target UPN corrected in the inventory, then checked again on its own
    fixed = blocked[0]
    row = next(r for r in rows if r["email"] == fixed["email"])
    _json(
        trust,
        "post",
        "/api/v1/organisations/RXX/mailboxes/bulk",
        [{**row, "target_upn": _ready_upn(fixed["email"], fixed["id"])}],
    )
    with django_capture_on_commit_callbacks(execute=True):
        again = _json(
            trust,
            "post",
            "/api/v1/organisations/RXX/readiness-checks/",
            {"mailboxes": [fixed["id"]]},
            expect=202,
        )
    assert trust.get(again["Location"]).json()["counts"] == {"ready": 1, "blocked": 0, "unchecked": 0}
    assert trust.get(f"/api/v1/mailboxes/{fixed['id']}/").json()["state"] == "ready"
    ready = Mailbox.objects.filter(organisation__ods_code="RXX", state="ready").count()
    still_blocked = 8 - ready

    # offered to the planner: its ready mailboxes are planned, the blocked ones listed as left out, by reason
    preview = _json(office, "post", "/api/v1/planner/preview/", {"start": "2026-06-01"}).json()
    assert preview["mailboxes"] == ready
    left_out = [item for item in preview["left_out"] if item["ods_code"] == "RXX"]
    if still_blocked:
        assert [r["code"] for r in left_out[0]["reasons"]] == ["BLOCKED:TARGET_MISSING"]
    committed = _json(
        office,
        "post",
        "/api/v1/planner/commit/",
        {"start": "2026-06-01", "fingerprint": preview["fingerprint"]},
        expect=201,
    ).json()
    wave_id = committed["waves"][0]["id"]

    # propose, the trust's go, a second person approves
    _json(office, "post", f"/api/v1/waves/{wave_id}/propose/", {})
    _json(trust, "post", f"/api/v1/waves/{wave_id}/go/", {"organisation": "RXX"})
    assert (
        second.post(f"/api/v1/waves/{wave_id}/approve/", {}, content_type="application/json").status_code
        == 200
    )
    assert trust.get("/api/v1/organisations/RXX/").json()["stage"] == "sync_switch"

    # the window opens and the workers run the wave to the end
    now = timezone.now()
    Wave.objects.filter(pk=wave_id).update(
        starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(hours=6)
    )
    for _ in range(30):
        with django_capture_on_commit_callbacks(execute=True):
            wave_tick(now=timezone.now())
        if Wave.objects.get(pk=wave_id).status == Wave.Status.COMPLETED:
            break
    wave = office.get(f"/api/v1/waves/{wave_id}/").json()
    assert wave["status"] == "completed"
    migrated = trust.get("/api/v1/mailboxes/?organisation=RXX&state=migrated").json()["results"]
    assert len(migrated) == ready
    assert (
        Event.objects.filter(action="organisation.stage_changed", organisation__ods_code="RXX").count() == 2
    )

    # what is left behind (the blocked ones) takes it to mop-up
    organisations_mop_up_review()
    expected = "mop_up" if still_blocked else "sync_switch"
    assert Organisation.objects.get(ods_code="RXX").stage == expected
