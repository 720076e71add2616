"""Failure triage across organisations, and the audit log with its filters and keyset paging; scoped."""

import datetime as dt
import re

from django.utils import timezone

from migrations_app.models import Event, Mailbox
from migrations_app.services.events import event_record
from tests.status_fixtures import wave_in_states

M = Mailbox.State


def test_triage_groups_failures_by_code_across_organisations(client_for, officer, org_a, org_b):
    wave_in_states([org_a, org_b], {("failed", "AUTH_FAILED"): 2})
    wave_in_states([org_a], {("failed", "OVER_QUOTA"): 1}, name="Second")
    html = client_for(officer).get("/failures/").content.decode()
    row = re.search(r'data-code="AUTH_FAILED">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r">(\d+)</td>", row) == ["4", "2", "1"]  # mailboxes, organisations, waves
    html = client_for(officer).get("/failures/", {"code": "OVER_QUOTA"}).content.decode()
    assert "Failed with OVER_QUOTA" in html and html.count(".rj1@example.nhs.uk</a>") == 1


def test_retry_per_code_retries_it_in_every_wave(client_for, officer, org_a, org_b):
    first = wave_in_states([org_a], {("failed", "THROTTLED"): 2})
    second = wave_in_states([org_b], {("failed", "THROTTLED"): 1, ("failed", "AUTH_FAILED"): 1}, name="Two")
    response = client_for(officer).post("/failures/retry/", {"code": "THROTTLED"}, follow=True)
    assert "3 mailbox(es) with THROTTLED will be retried" in response.content.decode()
    assert Mailbox.objects.filter(wave__in=[first, second], state=M.SCHEDULED).count() == 3
    assert Mailbox.objects.filter(state=M.FAILED).get().last_error_code == "AUTH_FAILED"


def test_a_trust_admin_sees_their_own_failures_only_and_cannot_retry_a_code(
    client_for, admin_a, org_a, org_b
):
    wave_in_states([org_a], {("failed", "AUTH_FAILED"): 1})
    wave_in_states([org_b], {("failed", "AUTH_FAILED"): 3, ("failed", "TLS_FAILED"): 1}, name="B")
    client = client_for(admin_a)
    html = client.get("/failures/").content.decode()
    assert "TLS_FAILED" not in html and "Retry these" not in html
    body = b"".join(client.get("/failures/export.csv").streaming_content).decode()
    assert body.count("\r\n") == 2 and ".rrv@" not in body  # header and their one mailbox
    assert client.post("/failures/retry/", {"code": "AUTH_FAILED"}).status_code == 403
    assert Mailbox.objects.filter(state=M.FAILED).count() == 5


def _events(org_a, org_b, officer, admin_a):
    event_record(action="organisation.enrolled", actor=admin_a, organisation=org_a, subject="RJ1")
    event_record(action="wave.approved", actor=officer, subject="Evening")
    event_record(action="mailbox.failed", organisation=org_b, subject="x@rrv.nhs.uk")


def log(client, **params) -> str:
    """The events table of the audit page (not its filter form and hints)."""
    html = client.get("/audit/", params).content.decode()
    return html.split('id="audit-events"', 1)[1] if 'id="audit-events"' in html else ""


def test_the_audit_log_filters_by_actor_organisation_action_and_date(
    client_for, officer, admin_a, org_a, org_b
):
    _events(org_a, org_b, officer, admin_a)
    client = client_for(officer)
    html = log(client, actor="admin_a")
    assert "organisation.enrolled" in html and "wave.approved" not in html
    html = log(client, organisation="rrv")
    assert "mailbox.failed" in html and "organisation.enrolled" not in html
    html = log(client, action="wave.")
    assert "wave.approved" in html and "mailbox.failed" not in html
    today = timezone.localdate()
    assert "wave.approved" in log(client, date_from=today, date_to=today)
    assert log(client, date_from=today + dt.timedelta(days=1)) == ""


def test_the_audit_log_is_keyset_paged(client_for, officer):
    for n in range(60):
        event_record(action="test.event", subject=f"event-{n:02d}")
    client = client_for(officer)
    html = client.get("/audit/").content.decode()
    assert "event-59" in html and "event-10" in html and "event-09" not in html
    before = re.search(r"before=(\d+)", html).group(1)
    html = client.get("/audit/", {"before": before}).content.decode()
    assert "event-09" in html and "event-00" in html and "event-10<" not in html


def test_a_trust_admin_sees_only_their_organisations_events(client_for, officer, admin_a, org_a, org_b):
    _events(org_a, org_b, officer, admin_a)
    client = client_for(admin_a)
    html = log(client)
    assert "organisation.enrolled" in html and "mailbox.failed" not in html
    assert log(client, organisation="RRV") == ""
    body = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert "organisation.enrolled" in body and "x@rrv.nhs.uk" not in body and "wave.approved" not in body
    assert Event.objects.count() == 3


def test_a_bad_date_in_the_audit_filters_is_an_error_not_a_crash(client_for, officer):
    event_record(action="wave.approved", subject="Evening")
    response = client_for(officer).get("/audit/", {"date_from": "31/02/2026"})
    assert response.status_code == 200
    assert "Enter a valid date" in response.content.decode()
