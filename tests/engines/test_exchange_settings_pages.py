"""Mailbox settings and pre-flight findings through the portal: a wave moves a mailbox with its settings and the
mailbox page says what moved and what did not; the CSV of what could not move, per organisation and per wave,
shows a trust admin only their own organisation's mailboxes; a readiness check counts items by class and blocks a
mailbox holding an item over 150 MB, naming it."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from migrations_app.engines.base import ITEM_TOO_LARGE
from migrations_app.models import Mailbox, ProgrammeSettings
from migrations_app.services.execution import mailbox_run_sync, wave_tick
from tests.engines.exchange_fixtures import (  # noqa: F401 - fixtures
    ExchangeBox,
    fake_ews,
    fake_graph,
)
from tests.engines.test_exchange_settings import SETTINGS
from tests.engines.test_exchange_wave import _wave, endpoints  # noqa: F401 - fixture
from tests.readiness_fixtures import inventoried, run_check  # noqa: F401 - fixture
from tests.wave_fixtures import ready_mailboxes, wave_with

M = Mailbox.State


def _rows(response) -> list[dict]:
    assert response.status_code == 200, response.status_code
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def _report(*records) -> dict:
    return {
        "at": "2026-11-30T19:00:00Z",
        "phase": "cutover",
        "records": [{"setting": s, "name": n, "outcome": o, "detail": d} for s, n, o, d in records],
    }


def test_a_wave_moves_a_mailbox_with_its_settings_and_its_page_says_what_did_not_move(
    db,
    org_a,
    admin_a,
    client_for,
    endpoints,  # noqa: F811
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
    tmp_path,
):
    wave, [mailbox], [box] = _wave(org_a, endpoints, fake_ews, fake_graph, tmp_path, 1)
    box.store.settings = dict(SETTINGS)

    wave_tick(now=timezone.now())  # the window is open: pre-stage, final delta, switch, catch-up, verify
    mailbox_run_sync(mailbox_id=mailbox.pk)

    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED, mailbox.last_error_message
    assert box.target.mailbox_settings["automaticRepliesSetting"]["status"] == "scheduled"
    assert {r["displayName"] for r in box.target.rules.values()} == {"Project mail", "Copy the rota"}
    report = mailbox.settings_report
    assert report["phase"] == "cutover"
    skipped = {(r["setting"], r["name"]) for r in report["records"] if r["outcome"] == "skipped"}
    assert ("delegate", "pa@trust.nhs.uk") in skipped and ("inbox_rule", "Outlook only") in skipped

    page = client_for(admin_a).get(reverse("mailbox_detail", args=[mailbox.pk])).content.decode()
    assert 'id="mailbox-settings"' in page and "Not moved" in page
    assert "Automatic replies" in page and "Delegate" in page
    assert reverse("organisation_settings_csv", args=[org_a.ods_code]) in page
    org_page = client_for(admin_a).get(reverse("organisation_detail", args=[org_a.ods_code])).content.decode()
    assert reverse("organisation_settings_csv", args=[org_a.ods_code]) in org_page
    wave_page = client_for(admin_a).get(reverse("wave_detail", args=[wave.pk])).content.decode()
    assert reverse("wave_settings_csv", args=[wave.pk]) in wave_page


@pytest.fixture
def reports(org_a, org_b):
    """A wave holding a mailbox of each organisation, each with a settings report."""
    wave = wave_with(org_a, org_b)
    [a] = ready_mailboxes(org_a, 1)
    [b] = ready_mailboxes(org_b, 1)
    [plain] = ready_mailboxes(org_a, 1)  # moved by another engine: no report, no rows
    Mailbox.objects.filter(pk__in=[a.pk, b.pk, plain.pk]).update(wave=wave)
    Mailbox.objects.filter(pk=a.pk).update(
        settings_report=_report(
            ("automatic_replies", "", "applied", "alwaysEnabled"),
            ("delegate", "pa@rj1.nhs.uk", "skipped", "delegate (calendar Editor): Graph has no delegate API"),
            ("send_as_full_access", "", "skipped", "Send As and Full Access are Active Directory rights"),
        )
    )
    Mailbox.objects.filter(pk=b.pk).update(
        settings_report=_report(
            ("inbox_rule", "=HYPERLINK(1)", "skipped", "the action 'x' has no Graph equivalent")
        )
    )
    return wave, a, b


def test_the_organisation_csv_lists_what_could_not_move_for_that_organisation_only(
    reports, org_a, org_b, admin_a, client_for
):
    wave, a, b = reports
    client = client_for(admin_a)

    rows = _rows(client.get(reverse("organisation_settings_csv", args=[org_a.ods_code])))
    assert [(r["mailbox"], r["setting"], r["outcome"]) for r in rows] == [
        (a.email, "Delegate", "skipped"),
        (a.email, "Send As and Full Access", "skipped"),
    ]
    assert rows[0]["organisation"] == "RJ1" and "no delegate API" in rows[0]["detail"]
    applied = _rows(
        client.get(reverse("organisation_settings_csv", args=[org_a.ods_code]), {"outcome": "applied"})
    )
    assert [r["setting"] for r in applied] == ["Automatic replies"]
    assert client.get(reverse("organisation_settings_csv", args=[org_b.ods_code])).status_code == 404


def test_the_wave_csv_shows_a_trust_admin_only_their_share_and_the_programme_office_all(
    reports, admin_a, officer, client_for
):
    wave, a, b = reports

    mine = _rows(client_for(admin_a).get(reverse("wave_settings_csv", args=[wave.pk])))
    assert {r["mailbox"] for r in mine} == {a.email}
    everyone = _rows(client_for(officer).get(reverse("wave_settings_csv", args=[wave.pk])))
    assert {r["mailbox"] for r in everyone} == {a.email, b.email}
    rule = next(r for r in everyone if r["mailbox"] == b.email)
    assert rule["name"] == "'=HYPERLINK(1)"  # a spreadsheet formula arrives as text


def test_another_trusts_admin_cannot_read_a_wave_they_are_not_in(reports, org_b, client_for):
    from tests.factories import UserFactory

    wave, a, b = reports
    outsider_org = type(org_b).objects.create(ods_code="RX3", name="Another trust")
    outsider = UserFactory(username="outsider", role="trust_admin")
    outsider.organisations.add(outsider_org)

    assert client_for(outsider).get(reverse("wave_settings_csv", args=[wave.pk])).status_code == 404


def test_a_readiness_check_counts_items_by_class_and_blocks_an_item_over_150_mb(
    db,
    org_a,
    admin_a,
    client_for,
    run_check,  # noqa: F811
    endpoints,  # noqa: F811
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
    tmp_path,
):
    source, target = endpoints
    ProgrammeSettings.objects.update_or_create(
        pk=1, defaults={"readiness_source_endpoint": source, "readiness_target_endpoint": target}
    )
    [fine, heavy] = inventoried(org_a, 2)
    boxes = {}
    for mailbox in (fine, heavy):
        box = ExchangeBox(fake_ews, fake_graph, tmp_path, mail=4, calendar=2, contacts=1, tasks=1, notes=1)
        Mailbox.objects.filter(pk=mailbox.pk).update(source_identity=box.address, target_upn=box.upn)
        boxes[mailbox.pk] = box
    store = boxes[heavy.pk].store
    big = store.add_item(store.folder("Inbox"), "IPM.Note", "Scan of the whole ward file", b"x")
    big.reported_size = 200 * 1024 * 1024

    run_check(actor=admin_a, organisation=org_a)

    fine.refresh_from_db()
    heavy.refresh_from_db()
    assert fine.state == M.READY and heavy.state == M.BLOCKED
    assert heavy.blocked_code == ITEM_TOO_LARGE
    assert "Scan of the whole ward file" in heavy.blocked_reason and "Inbox" in heavy.blocked_reason
    assert fine.preflight_report == {
        "classes": {"mail": 4, "calendar": 2, "contacts": 1, "tasks": 1, "notes": 1},
        "too_large": [],
    }
    assert heavy.preflight_report["too_large"] == [
        {
            "folder": "Inbox",
            "subject": "Scan of the whole ward file",
            "size": 200 * 1024 * 1024,
            "class": "IPM.Note",
        }
    ]
    page = client_for(admin_a).get(reverse("mailbox_detail", args=[heavy.pk])).content.decode()
    assert 'id="too-large"' in page and "Scan of the whole ward file" in page and "200.0 MB" in page
    assert 'data-class="calendar">Calendar: 2 items' in page
