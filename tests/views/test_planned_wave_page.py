"""A draft or proposed wave's page shows what will move: its organisations with their planned mailboxes and
data, and totals that stay right when a pilot, a readiness check or a retirement takes mailboxes from it."""

import datetime as dt

from migrations_app.models import Mailbox, ReadinessCheck, Wave
from migrations_app.services.pilots import pilot_wave_create
from migrations_app.services.readiness.checks import readiness_batch_run
from migrations_app.services.readiness.leavers import mailbox_retire
from tests.wave_fixtures import ready_mailboxes, wave_with


def test_a_draft_wave_shows_its_planned_mailboxes_not_zero(client_for, officer, org_a, org_b):
    ready_mailboxes(org_a, 7, size=2_000_000)
    ready_mailboxes(org_b, 3, size=2_000_000)
    wave = wave_with(org_a, org_b)
    page = client_for(officer).get(f"/waves/{wave.pk}/").content.decode()
    assert "of 10 mailboxes moved" in page
    assert "No mailboxes yet" not in page
    live = page.split('id="wave-live"')[1]
    assert 'data-state="ready"' in live


def test_a_trust_admin_sees_only_their_planned_mailboxes(client_for, admin_a, org_a, org_b):
    ready_mailboxes(org_a, 2)
    ready_mailboxes(org_b, 5)
    wave = wave_with(org_a, org_b)
    assert "of 2 mailboxes moved" in client_for(admin_a).get(f"/waves/{wave.pk}/").content.decode()


def test_totals_stay_right_after_a_pilot_takes_mailboxes(officer, org_a):
    ready_mailboxes(org_a, 10)
    wave = wave_with(org_a)
    assert wave.planned_mailboxes == 10
    pilot_wave_create(actor=officer, starts_on=dt.date(2026, 6, 8), organisations=[org_a], per_organisation=4)
    wave.refresh_from_db()
    assert wave.planned_mailboxes == 6


def test_totals_stay_right_after_a_check_blocks_or_a_retirement_takes_one(admin_a, org_a, preflight_rates):
    boxes = ready_mailboxes(org_a, 10)
    wave = wave_with(org_a)
    mailbox_retire(mailbox=boxes[0], actor=admin_a, reason="left")
    wave.refresh_from_db()
    assert wave.planned_mailboxes == 9
    preflight_rates({"NOT_LICENSED": 1.0})
    check = ReadinessCheck.objects.create(organisation=org_a, status="running", total=2)
    readiness_batch_run(check_id=check.pk, mailbox_ids=[boxes[1].pk, boxes[2].pk])
    wave.refresh_from_db()
    assert wave.planned_mailboxes == 7
    assert Wave.objects.get(pk=wave.pk).planned_mailboxes == Mailbox.objects.filter(state="ready").count()
