"""Organisations, mailboxes, events, endpoints, import jobs: scoped like the pages, problem+json errors."""

from urllib.parse import quote

import pytest

from migrations_app.models import Endpoint, Event, ImportJob, Mailbox, Organisation
from migrations_app.services.imports import import_job_run
from tests.factories import MailboxFactory

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def post(client, url, data):
    return client.post(url, data, content_type="application/json")


@pytest.fixture
def mailboxes(org_a, org_b):
    return [MailboxFactory(organisation=org_a) for _ in range(3)] + [MailboxFactory(organisation=org_b)]


def enrolment(code="RXX"):
    return {
        "ods_code": code,
        "name": "New trust",
        "kind": "trust",
        "region": "london",
        "primary_contact": {"name": "Ann", "email": "ann@example.nhs.uk"},
    }


def test_a_trust_admin_sees_only_their_organisations(api, admin_a, org_a, org_b):
    client = api(admin_a)
    assert [o["ods_code"] for o in client.get("/api/v1/organisations/").json()["results"]] == ["RJ1"]
    assert client.get("/api/v1/organisations/RJ1/").json()["name"] == org_a.name
    response = client.get("/api/v1/organisations/RRV/")
    assert response.status_code == 404 and set(response.json()) >= PROBLEM_KEYS
    assert response["Content-Type"] == "application/problem+json"


def test_organisations_filter(api, viewer, org_a, org_b):
    org_b.status = "ready"
    org_b.save()
    rows = api(viewer).get("/api/v1/organisations/?status=ready").json()["results"]
    assert [o["ods_code"] for o in rows] == ["RRV"]


def test_enrol_through_the_api(api, admin_a):
    response = post(api(admin_a), "/api/v1/organisations/", enrolment())
    assert response.status_code == 201 and response.json()["status"] == "enrolled"
    assert admin_a.organisations.filter(ods_code="RXX").exists()
    again = post(api(admin_a), "/api/v1/organisations/", enrolment())
    # a duplicate enrolment conflicts with what exists: 409 `conflict`, not a malformed request
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert "RXX is already enrolled" in again.json()["detail"]


def test_enrol_validation_errors_name_each_field(api, admin_a):
    body = post(api(admin_a), "/api/v1/organisations/", {"name": ""}).json()
    assert body["code"] == "invalid"
    assert {"ods_code", "name", "kind", "region", "primary_contact"} <= {e["field"] for e in body["errors"]}


def test_a_viewer_is_read_only(api, client_for, viewer, org_a, mailboxes):
    client = api(viewer)  # a viewer's token can only read
    assert client.get("/api/v1/mailboxes/").status_code == 200
    response = post(client, "/api/v1/organisations/", enrolment())
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
    session = client_for(viewer)  # a session carries every scope: the role itself refuses
    assert post(session, "/api/v1/organisations/", enrolment()).status_code == 403
    response = post(session, "/api/v1/organisations/RJ1/mailboxes/bulk", [])
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_mailboxes_are_scoped_and_filtered(api, admin_a, officer, mailboxes):
    rows = api(admin_a).get("/api/v1/mailboxes/").json()["results"]
    assert len(rows) == 3 and {r["organisation"] for r in rows} == {"RJ1"}
    assert api(admin_a).get(f"/api/v1/mailboxes/{mailboxes[-1].pk}/").status_code == 404
    assert len(api(officer).get("/api/v1/mailboxes/?organisation=rrv").json()["results"]) == 1
    Mailbox.objects.filter(pk=mailboxes[0].pk).update(state="failed", last_error_code="auth")
    rows = api(officer).get("/api/v1/mailboxes/?state=failed&last_error_code=auth").json()["results"]
    assert [r["id"] for r in rows] == [mailboxes[0].pk]


def test_mailbox_cursor_pages_are_stable(api, officer, org_a):
    made = [MailboxFactory(organisation=org_a).pk for _ in range(5)]
    client = api(officer)
    page = client.get("/api/v1/mailboxes/?page_size=2").json()
    assert [r["id"] for r in page["results"]] == made[:2]
    MailboxFactory(organisation=org_a)  # a new row does not shift the pages already handed out
    second = client.get(page["next"]).json()
    assert [r["id"] for r in second["results"]] == made[2:4]
    assert client.get(page["next"]).json() == second


def test_mailbox_pages_keep_their_stable_order_whatever_ordering_is_asked(api, officer, org_a):
    made = [MailboxFactory(organisation=org_a, size_bytes=size).pk for size in (5, 1, 4, 2, 3)]
    page = api(officer).get("/api/v1/mailboxes/?ordering=size_bytes&page_size=5").json()
    assert [r["id"] for r in page["results"]] == made


def test_events_feed_follows_after(api, admin_a, officer, org_a, org_b):
    officer_client, admin_client = api(officer), api(admin_a)  # (making a token records an event)
    first = Event.objects.create(action="a", organisation=org_a)
    Event.objects.create(action="b", organisation=org_b)
    third = Event.objects.create(action="c", organisation=org_a)
    body = admin_client.get(f"/api/v1/events/?after={first.pk - 1}").json()
    assert [e["id"] for e in body["results"]] == [first.pk, third.pk]
    body = admin_client.get(body["next"]).json()
    assert body["results"] == [] and body["after"] == third.pk
    assert len(officer_client.get(f"/api/v1/events/?after={first.pk - 1}").json()["results"]) == 3


def test_endpoints_are_programme_office_only_and_never_return_the_secret(api, officer, admin_a):
    response = post(
        api(officer),
        "/api/v1/endpoints/",
        {"name": "src", "kind": "imap", "role": "source", "secret": "hunter2"},
    )
    assert response.status_code == 201 and "secret" not in response.json()
    assert response.json()["has_secret"] is True
    assert Endpoint.objects.get().secret == "hunter2"
    assert "hunter2" not in api(officer).get("/api/v1/endpoints/").content.decode()
    assert api(admin_a).get("/api/v1/endpoints/").status_code == 403


def test_method_not_allowed_is_a_problem(api, officer, org_a):
    response = api(officer).delete("/api/v1/organisations/RJ1/")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


# --- bulk upsert ------------------------------------------------------------------------------------------


def row(n, **extra):
    return {
        "email": f"user{n}@rj1.nhs.uk",
        "display_name": f"User {n}",
        "kind": "user",
        "size_bytes": 1000,
        "item_count": 10,
        "affinity_group": "",
        **extra,
    }


def test_bulk_json_upserts(api, admin_a, org_a):
    client = api(admin_a)
    response = post(client, "/api/v1/organisations/RJ1/mailboxes/bulk", [row(1), row(2)])
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "succeeded" and response.json()["rows_created"] == 2
    response = post(client, "/api/v1/organisations/RJ1/mailboxes/bulk", [row(1, display_name="Renamed")])
    assert response.json()["rows_updated"] == 1
    assert Mailbox.objects.get(email="user1@rj1.nhs.uk").display_name == "Renamed"


def test_bulk_csv_upserts(api, admin_a, org_a):
    body = "email,display_name,kind,size_bytes,item_count,affinity_group\nx@rj1.nhs.uk,X,user,1,1,\n"
    response = api(admin_a).post("/api/v1/organisations/RJ1/mailboxes/bulk", body, content_type="text/csv")
    assert response.status_code == 200 and response.json()["rows_created"] == 1


def test_bulk_bad_rows_are_a_problem_with_row_errors(api, admin_a, org_a):
    response = post(api(admin_a), "/api/v1/organisations/RJ1/mailboxes/bulk", [row(1), row(2, kind="banana")])
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "import_rejected" and body["error_count"] == 1
    assert body["errors"][0]["index"] == 1 and body["errors"][0]["column"] == "kind"
    assert "line" not in body["errors"][0]  # the item's index in the JSON list, not a line of a CSV
    assert not Mailbox.objects.exists()
    duplicate = post(api(admin_a), "/api/v1/organisations/RJ1/mailboxes/bulk", [row(1), row(2), row(1)])
    [error] = duplicate.json()["errors"]
    assert error["index"] == 2 and "first appeared on item 0" in error["message"]


def test_an_empty_bulk_body_says_so_at_line_1(api, admin_a, org_a):
    response = api(admin_a).post("/api/v1/organisations/RJ1/mailboxes/bulk", "", content_type="text/csv")
    body = response.json()
    assert response.status_code in (400, 422), body
    assert body["errors"][0]["line"] == 1 and "empty" in body["errors"][0]["message"], body


def test_bulk_to_another_trust_is_refused(api, admin_a, org_a, org_b):
    assert post(api(admin_a), "/api/v1/organisations/RRV/mailboxes/bulk", [row(1)]).status_code == 404


def test_large_bulk_is_a_job_to_poll(api, admin_a, org_a, settings):
    settings.API_BULK_INLINE_MAX_ROWS = 1
    client = api(admin_a)
    response = post(client, "/api/v1/organisations/RJ1/mailboxes/bulk", [row(1), row(2)])
    assert response.status_code == 202 and response.json()["status"] == "queued"
    job_url = response["Location"]
    import_job_run(job_id=response.json()["id"])  # what the worker does
    assert client.get(job_url).json()["status"] == "succeeded"
    assert ImportJob.objects.get().rows_created == 2


@pytest.mark.parametrize("url", ["/api/v1/nothing-here/", "/api/v1/organisations/RJ1/nope", "/api/v2/"])
def test_unknown_api_urls_are_problems_not_pages(api, officer, org_a, url):
    response = api(officer).get(url)
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found" and url in response.json()["detail"]


def test_unknown_pages_outside_the_api_stay_pages(client, officer):
    client.force_login(officer)
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_wrong_method_on_a_known_api_url_is_a_problem(api, officer):
    response = api(officer).put("/api/v1/mailboxes/", {}, content_type="application/json")
    assert response.status_code == 405 and response["Content-Type"] == "application/problem+json"
    assert response["Allow"] and response.json()["code"] == "method_not_allowed"


def test_a_server_error_under_the_api_is_a_problem(api, officer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("migrations_app.api.resources.MailboxViewSet.list", broken)
    client = api(officer)
    client.raise_request_exception = False
    response = client.get("/api/v1/mailboxes/")
    assert response.status_code == 500 and response.json()["code"] == "server_error"


@pytest.mark.parametrize(
    "value",
    ["2138-09-29T02:08:09+16:51", "9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00", "yesterday"],
)
def test_impossible_date_times_in_filters_are_a_400(api, officer, value):
    """Found by schemathesis on PostgreSQL, which refuses offsets beyond +-15:59 with a server error."""
    for url in ("/api/v1/mailboxes/?updated_since=", "/api/v1/waves/?starts_after="):
        response = api(officer).get(url + quote(value))
        assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_date_time_filters_take_any_real_offset(api, officer, org_a):
    made = MailboxFactory(organisation=org_a)
    rows = api(officer).get("/api/v1/mailboxes/?updated_since=" + quote("2000-01-01T00:00:00+14:00")).json()
    assert [r["id"] for r in rows["results"]] == [made.pk]


def test_the_fast_path_matches_the_declared_fields(org_a):
    from migrations_app.api.serializers import MailboxSerializer

    mailbox = MailboxFactory(organisation=org_a, last_error_code="auth", last_error_message="No")
    mailbox = Mailbox.objects.select_related("organisation").get(pk=mailbox.pk)
    serializer = MailboxSerializer()
    assert serializer.to_representation(mailbox) == serializer.to_representation_declared(mailbox)
    assert list(serializer.to_representation(mailbox)) == MailboxSerializer.Meta.fields


def test_gates_have_one_shape_read_and_written(api, admin_a):
    gates = {"gate_mfa_enforced": True, "gate_acceptable_use": False}
    response = post(api(admin_a), "/api/v1/organisations/", {**enrolment(), "gates": gates})
    assert response.status_code == 201, response.json()
    read = api(admin_a).get("/api/v1/organisations/RXX/").json()["gates"]
    assert read == response.json()["gates"] and read["gate_mfa_enforced"] is True
    assert set(read) == set(Organisation.GATES) and not read["gate_acceptable_use"]
    # what a GET returned can be sent back as it is
    again = post(api(admin_a), "/api/v1/organisations/", {**enrolment("RXY"), "gates": read})
    assert again.status_code == 201 and again.json()["gates"] == read
    bad = post(api(admin_a), "/api/v1/organisations/", {**enrolment("RXZ"), "gates": {"gate_nonsense": True}})
    assert bad.status_code == 400 and "gate_nonsense" in str(bad.json())


def test_an_empty_json_list_says_so(api, admin_a, org_a):
    response = post(api(admin_a), "/api/v1/organisations/RJ1/mailboxes/bulk", [])
    assert response.status_code == 422 and "empty" in response.json()["errors"][0]["message"]
