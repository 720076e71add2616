"""The support-rate gate: a wave that crossed a threshold holds the organisation's next waves until the trust
says go again or the programme office overrides with a reason."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from migrations_app.models import Event, Mailbox, NotificationSettings, OrganisationHold, Wave
from migrations_app.services.gate import gate_evaluate, hold_go, hold_override
from migrations_app.services.support import support_tickets_import
from migrations_app.services.waves import wave_approve, wave_go, wave_propose
from tests.notify_fixtures import wave_in
from tests.wave_fixtures import ready_mailboxes, wave_with

DAY = dt.timedelta(days=1)


def crossed_wave(org, actor, *, supported=4, moved=50):
    """A completed wave in which `supported` of `moved` mailboxes needed support."""
    wave, mailboxes = wave_in(org, starts_in=-2 * DAY, mailboxes=moved, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(state=Mailbox.State.MIGRATED)
    now = timezone.now().isoformat()
    rows = [
        {"reference": f"T{i}", "address": m.email, "opened_at": now, "category": "sign_in"}
        for i, m in enumerate(mailboxes[:supported])
    ]
    if rows:
        support_tickets_import(organisation=org, actor=actor, rows=rows)
    return wave


@pytest.fixture
def next_wave(db, org_a, org_b, officer, admin_a, admin_b):
    ready_mailboxes(org_a, 2)
    ready_mailboxes(org_b, 2)
    wave = wave_with(org_a, org_b, day=dt.date.today() + dt.timedelta(days=30), name="Next")
    wave_propose(wave=wave, actor=officer)
    wave_go(wave=wave, organisation=org_a, actor=admin_a)
    wave_go(wave=wave, organisation=org_b, actor=admin_b)
    return wave


def test_a_wave_over_the_support_threshold_holds_the_next_one(next_wave, org_a, admin_a, approver):
    last = crossed_wave(org_a, admin_a, supported=4, moved=50)  # 8% > 3%
    (hold,) = gate_evaluate()
    assert (hold.organisation, hold.wave, str(hold.support_rate)) == (org_a, last, "8.00")
    assert "8.00% of its moved mailboxes needed support" in hold.reason
    assert Event.objects.filter(action="organisation.held", organisation_id=org_a.pk).exists()
    assert gate_evaluate() == []  # once per organisation and wave

    with pytest.raises(ValidationError, match="RJ1 is on hold"):
        wave_approve(wave=next_wave, actor=approver)
    next_wave.refresh_from_db()
    assert next_wave.status == Wave.Status.PROPOSED  # the refusal rolled the approval back


def test_under_the_threshold_nothing_is_held(next_wave, org_a, admin_a, approver):
    crossed_wave(org_a, admin_a, supported=1, moved=50)  # 2%
    assert gate_evaluate() == []
    assert wave_approve(wave=next_wave, actor=approver).status == Wave.Status.APPROVED


def test_a_failure_rate_over_its_threshold_holds_too(org_a):
    wave, mailboxes = wave_in(org_a, starts_in=-2 * DAY, mailboxes=10, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(pk=mailboxes[0].pk).update(state=Mailbox.State.FAILED)
    NotificationSettings.objects.update_or_create(pk=1, defaults={"failure_rate_threshold": 5})
    (hold,) = gate_evaluate()
    assert "10.00% of its mailboxes failed" in hold.reason


def test_the_trust_gives_go_again(next_wave, org_a, admin_a, approver):
    crossed_wave(org_a, admin_a)
    gate_evaluate()
    hold_go(organisation=org_a, actor=admin_a, reason="Service desk doubled for the next wave")
    assert OrganisationHold.objects.get().release == "go"
    assert Event.objects.filter(action="organisation.hold_go").exists()
    assert wave_approve(wave=next_wave, actor=approver).status == Wave.Status.APPROVED


def test_the_programme_office_overrides_with_a_reason(next_wave, org_a, admin_a, officer, approver):
    crossed_wave(org_a, admin_a)
    gate_evaluate()
    with pytest.raises(ValidationError):
        hold_override(organisation=org_a, actor=officer, reason=" ")
    hold_override(organisation=org_a, actor=officer, reason="Tickets were a known password reset issue")
    hold = OrganisationHold.objects.get()
    assert (hold.release, hold.released_by) == ("override", officer)
    assert wave_approve(wave=next_wave, actor=approver).status == Wave.Status.APPROVED


def test_only_the_trust_itself_gives_go_and_only_the_office_overrides(
    org_a, org_b, admin_a, admin_b, officer, viewer
):
    crossed_wave(org_a, admin_a)
    gate_evaluate()
    with pytest.raises(PermissionDenied):
        hold_go(organisation=org_a, actor=admin_b)
    with pytest.raises(PermissionDenied):
        hold_go(organisation=org_a, actor=officer)
    with pytest.raises(PermissionDenied):
        hold_override(organisation=org_a, actor=admin_a, reason="We say so")
    with pytest.raises(PermissionDenied):
        hold_override(organisation=org_a, actor=viewer, reason="We say so")
    assert OrganisationHold.objects.filter(released_at__isnull=True).count() == 1
