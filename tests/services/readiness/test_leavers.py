"""Leavers: retire a mailbox (kept, never planned, refused in flight) and bring it back; permissions."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from migrations_app.models import Event, Mailbox
from migrations_app.services.plans import plan_preview
from migrations_app.services.readiness.leavers import mailbox_reinstate, mailbox_retire
from tests.wave_fixtures import ready_mailboxes, wave_with

M = Mailbox.State


@pytest.mark.parametrize("state", [M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.VERIFYING])
def test_it_refuses_a_mailbox_in_flight(org_a, admin_a, state):
    [box] = ready_mailboxes(org_a, 1)
    Mailbox.objects.filter(pk=box.pk).update(wave=wave_with(org_a, status="running"), state=state)
    box.refresh_from_db()
    with pytest.raises(ValidationError, match="it is being moved"):
        mailbox_retire(mailbox=box, actor=admin_a, reason="left")
    box.refresh_from_db()
    assert box.state == state


def test_a_retired_mailbox_is_kept_and_never_planned(org_a, admin_a, officer):
    import datetime as dt

    boxes = ready_mailboxes(org_a, 3)
    mailbox_retire(mailbox=boxes[0], actor=admin_a, reason="left the trust")
    assert Mailbox.objects.filter(pk=boxes[0].pk, state=M.RETIRED).exists()
    plan = plan_preview(start=dt.date(2026, 6, 1), actor=officer)
    assert plan.mailboxes == 2
    event = Event.objects.get(action="mailbox.retired")
    assert (event.from_state, event.to_state, event.message, event.actor) == (
        M.READY,
        M.RETIRED,
        "left the trust",
        admin_a,
    )


def test_bringing_it_back_needs_a_new_check(org_a, admin_a):
    [box] = ready_mailboxes(org_a, 1)
    mailbox_retire(mailbox=box, actor=admin_a, reason="left")
    box = mailbox_reinstate(mailbox=box, actor=admin_a, reason="came back")
    assert (box.state, box.checked_at) == (M.INVENTORIED, None)
    with pytest.raises(ValidationError, match="is not retired"):
        mailbox_reinstate(mailbox=box, actor=admin_a, reason="again")


def test_another_organisations_admin_cannot_retire_or_bring_back(org_a, admin_b):
    [box] = ready_mailboxes(org_a, 1)
    with pytest.raises(PermissionDenied):
        mailbox_retire(mailbox=box, actor=admin_b, reason="x")
    Mailbox.objects.filter(pk=box.pk).update(state=M.RETIRED)
    box.refresh_from_db()
    with pytest.raises(PermissionDenied):
        mailbox_reinstate(mailbox=box, actor=admin_b, reason="x")


def test_a_viewer_cannot_retire(org_a, viewer):
    [box] = ready_mailboxes(org_a, 1)
    with pytest.raises(PermissionDenied):
        mailbox_retire(mailbox=box, actor=viewer, reason="x")
