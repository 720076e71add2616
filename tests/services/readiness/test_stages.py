"""An organisation's stages as a state machine: each move one service call with an Event, only from the stages
its entry rule names; the programme office closes, with a reason, once every mailbox is migrated or retired."""

import datetime as dt
import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from migrations_app.models import Event, Mailbox, Organisation, Wave
from migrations_app.services.imports import inventory_import
from migrations_app.services.pilots import pilot_wave_create
from migrations_app.services.readiness.leavers import mailbox_retire
from migrations_app.services.readiness.stages import (
    organisation_close,
    organisations_mop_up_review,
    organisations_stage_on_approval,
)
from migrations_app.services.waves import wave_approve, wave_go, wave_propose
from tests.wave_fixtures import ready_mailboxes, wave_with

ST = Organisation.Stage
M = Mailbox.State


def _stage(org) -> str:
    org.refresh_from_db()
    return org.stage


def _moves(org) -> list[tuple[str, str]]:
    return list(
        Event.objects.filter(action="organisation.stage_changed", organisation=org)
        .order_by("id")
        .values_list("from_state", "to_state")
    )


def test_an_imported_inventory_moves_an_enrolled_organisation_into_readiness(org_a, admin_a):
    csv = "email,display_name,kind,size_bytes,item_count,affinity_group\na@rj1.nhs.uk,A,user,1,1,\n"
    inventory_import(source=io.BytesIO(csv.encode()), organisation=org_a, actor=admin_a)
    assert _stage(org_a) == ST.READINESS
    assert _moves(org_a) == [(ST.ENROLLED, ST.READINESS)]
    # a second import changes nothing
    inventory_import(source=io.BytesIO(csv.encode()), organisation=org_a, actor=admin_a)
    assert _moves(org_a) == [(ST.ENROLLED, ST.READINESS)]


def test_a_rejected_inventory_leaves_the_stage(org_a, admin_a):
    inventory_import(
        source=io.BytesIO(b"email,display_name\nnot-an-address,A\n"), organisation=org_a, actor=admin_a
    )
    assert _stage(org_a) == ST.ENROLLED


def _approved(*orgs, officer, approver, admins, **wave_fields) -> Wave:
    wave = wave_with(*orgs, **wave_fields)
    wave_propose(wave=wave, actor=officer)
    for org, admin in zip(orgs, admins, strict=True):
        wave_go(wave=wave, organisation=org, actor=admin)
    return wave_approve(wave=wave, actor=approver)


def test_the_path_from_readiness_to_closed(org_a, admin_a, officer, approver):
    Organisation.objects.filter(pk=org_a.pk).update(stage=ST.READINESS)
    ready_mailboxes(org_a, 2)
    pilot = pilot_wave_create(
        actor=officer, starts_on=dt.date(2026, 6, 1), organisations=[org_a], per_organisation=1
    )
    wave_propose(wave=pilot, actor=officer)
    wave_go(wave=pilot, organisation=org_a, actor=admin_a)
    wave_approve(wave=pilot, actor=approver)
    assert _stage(org_a) == ST.PILOT

    main = _approved(org_a, officer=officer, approver=approver, admins=[admin_a], name="Main")
    assert _stage(org_a) == ST.SYNC_SWITCH
    assert Event.objects.filter(
        action="organisation.stage_changed", to_state=ST.SYNC_SWITCH, actor=approver
    ).exists()

    # still planned: no mop-up yet
    assert organisations_mop_up_review() == []
    Mailbox.objects.filter(wave=main).update(state=M.FAILED)
    Mailbox.objects.filter(wave=pilot).update(state=M.MIGRATED)
    assert organisations_mop_up_review() == [org_a.pk]
    assert _stage(org_a) == ST.MOP_UP

    with pytest.raises(ValidationError, match="neither migrated nor retired"):
        organisation_close(organisation=org_a, actor=officer, reason="done")
    for box in Mailbox.objects.filter(state=M.FAILED):
        mailbox_retire(mailbox=box, actor=admin_a, reason="left")
    organisation_close(organisation=org_a, actor=officer, reason="signed off by the trust")
    assert _stage(org_a) == ST.CLOSED
    assert _moves(org_a) == [
        (ST.READINESS, ST.PILOT),
        (ST.PILOT, ST.SYNC_SWITCH),
        (ST.SYNC_SWITCH, ST.MOP_UP),
        (ST.MOP_UP, ST.CLOSED),
    ]


def test_a_pilot_approved_after_the_main_wave_does_not_move_it_back(org_a, admin_a, officer, approver):
    Organisation.objects.filter(pk=org_a.pk).update(stage=ST.SYNC_SWITCH)
    ready_mailboxes(org_a, 1)
    wave = wave_with(org_a, is_pilot=True)
    assert organisations_stage_on_approval(wave=wave, actor=approver) == []
    assert _stage(org_a) == ST.SYNC_SWITCH


def test_only_an_organisation_in_sync_switch_or_mop_up_can_be_closed(org_a, officer):
    with pytest.raises(ValidationError, match="only an organisation in Sync & Switch or Mop-up"):
        organisation_close(organisation=org_a, actor=officer, reason="x")


def test_closing_needs_a_reason(org_a, officer):
    Organisation.objects.filter(pk=org_a.pk).update(stage=ST.MOP_UP)
    org_a.refresh_from_db()
    with pytest.raises(ValidationError, match="Give a reason"):
        organisation_close(organisation=org_a, actor=officer, reason="  ")


def test_a_trust_admin_cannot_close_even_their_own_organisation(org_a, admin_a, org_b, admin_b):
    Organisation.objects.filter(pk__in=[org_a.pk, org_b.pk]).update(stage=ST.MOP_UP)
    org_a.refresh_from_db()
    for admin in (admin_a, admin_b):
        with pytest.raises(PermissionDenied):
            organisation_close(organisation=org_a, actor=admin, reason="x")
    assert _stage(org_a) == ST.MOP_UP
