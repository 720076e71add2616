"""The approval workflow: propose, go / no-go, approve (four eyes), reject, pause, resume, cancel; every
decision a Decision row and an Event; every permission boundary."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from migrations_app.models import Decision, Event, Mailbox, ProgrammeSettings, Wave
from migrations_app.selectors.waves import wave_members, wave_missing_go, wave_totals
from migrations_app.services.planning import programme_settings_update
from migrations_app.services.waves import (
    WaveConflict,
    wave_act,
    wave_approve,
    wave_cancel,
    wave_go,
    wave_no_go,
    wave_pause,
    wave_propose,
    wave_reject,
    wave_resume,
)
from tests.factories import UserFactory
from tests.wave_fixtures import ready_mailboxes, wave_with


@pytest.fixture
def wave(db, org_a, org_b):
    ready_mailboxes(org_a, 3)
    ready_mailboxes(org_b, 2)
    return wave_with(org_a, org_b)


@pytest.fixture
def proposed(wave, officer):
    return wave_propose(wave=wave, actor=officer)


@pytest.fixture
def agreed(proposed, org_a, org_b, admin_a, admin_b):
    wave_go(wave=proposed, organisation=org_a, actor=admin_a)
    wave_go(wave=proposed, organisation=org_b, actor=admin_b)
    return proposed


def test_it_proposes_a_draft(wave, officer):
    wave_propose(wave=wave, actor=officer, reason="Ready for sign-off")
    wave.refresh_from_db()
    assert wave.status == "proposed" and wave.proposed_by == officer
    decision = Decision.objects.get(wave=wave)
    assert (decision.kind, decision.actor, decision.reason) == ("propose", officer, "Ready for sign-off")
    event = Event.objects.get(action="wave.propose")
    assert (event.wave_id, event.from_state, event.to_state) == (wave.pk, "draft", "proposed")


def test_it_refuses_to_propose_an_empty_or_overfull_wave(db, officer, org_a):
    with pytest.raises(ValidationError, match="no mailboxes"):
        wave_propose(wave=wave_with(org_a), actor=officer)
    ready_mailboxes(org_a, 3)
    with pytest.raises(ValidationError, match="over its capacity"):
        wave_propose(wave=wave_with(org_a, capacity=2), actor=officer)


def test_trust_admins_and_viewers_cannot_propose_approve_reject_pause_or_cancel(proposed, admin_a, viewer):
    for user in (admin_a, viewer):
        for action in ("propose", "approve", "pause", "resume", "cancel", "reject"):
            with pytest.raises(PermissionDenied):
                wave_act(wave=proposed, action=action, actor=user, reason="because")


def test_an_organisation_says_go(proposed, org_a, admin_a):
    decision = wave_go(wave=proposed, organisation=org_a, actor=admin_a, reason="Service desk briefed")
    assert (decision.kind, decision.organisation, decision.actor) == ("go", org_a, admin_a)
    assert Event.objects.filter(action="wave.go", organisation=org_a.pk, wave=proposed.pk).exists()
    assert wave_missing_go(proposed) == [
        proposed.allocations.exclude(organisation=org_a).get().organisation_id
    ]


def test_a_trust_admin_cannot_answer_for_another_organisation(proposed, org_b, admin_a):
    with pytest.raises(PermissionDenied):
        wave_go(wave=proposed, organisation=org_b, actor=admin_a)
    with pytest.raises(PermissionDenied):
        wave_no_go(wave=proposed, organisation=org_b, actor=admin_a, reason="not mine to say")
    assert not Decision.objects.filter(kind__in=["go", "no_go"]).exists()


def test_a_viewer_cannot_answer(proposed, org_a, viewer):
    with pytest.raises(PermissionDenied):
        wave_go(wave=proposed, organisation=org_a, actor=viewer)


def test_go_needs_a_proposed_wave_and_an_organisation_in_it(wave, proposed, org_a, admin_a, db):
    from tests.factories import OrganisationFactory

    outsider = OrganisationFactory(ods_code="OUT1")
    admin_a.organisations.add(outsider)
    with pytest.raises(ValidationError, match="not in"):
        wave_go(wave=proposed, organisation=outsider, actor=admin_a)
    draft = wave_with(org_a, name="Another")
    with pytest.raises(WaveConflict):
        wave_go(wave=draft, organisation=org_a, actor=admin_a)


def test_no_go_takes_the_organisation_out_with_its_reason(proposed, org_a, org_b, admin_b):
    with pytest.raises(ValidationError):
        wave_no_go(wave=proposed, organisation=org_b, actor=admin_b, reason="  ")
    wave_no_go(wave=proposed, organisation=org_b, actor=admin_b, reason="Go-live of the new EPR that week")
    assert set(wave_members(proposed).values_list("organisation_id", flat=True)) == {org_a.pk}
    assert Mailbox.objects.filter(organisation=org_b, state="ready", wave__isnull=True).count() == 2
    decision = Decision.objects.get(kind="no_go")
    assert decision.reason == "Go-live of the new EPR that week" and decision.organisation == org_b
    event = Event.objects.get(action="wave.no_go")
    assert event.message == decision.reason and event.data["allocations_removed"] == 1
    proposed.refresh_from_db()
    assert proposed.planned_mailboxes == 3


def test_approval_needs_every_organisation_to_say_go(proposed, org_a, admin_a, approver):
    wave_go(wave=proposed, organisation=org_a, actor=admin_a)
    with pytest.raises(ValidationError, match="1 organisation"):
        wave_approve(wave=proposed, actor=approver)
    proposed.refresh_from_db()
    assert proposed.status == "proposed"  # the conditional update rolled back with the refusal


def test_approval_without_every_go_when_the_setting_allows(proposed, approver):
    settings = ProgrammeSettings.load()
    settings.go_required_from_every_organisation = False
    settings.save()
    assert wave_approve(wave=proposed, actor=approver).status == "approved"


def test_it_refuses_the_proposer_as_approver(agreed, officer):
    with pytest.raises(PermissionDenied, match="another member"):
        wave_approve(wave=agreed, actor=officer)
    agreed.refresh_from_db()
    assert agreed.status == "proposed"


def test_four_eyes_can_be_turned_off_only_by_the_deployment(agreed, officer, settings):
    settings.WAVE_FOUR_EYES = False
    assert wave_approve(wave=agreed, actor=officer).status == "approved"


def test_no_member_can_switch_four_eyes_off(agreed, officer):
    """It was a programme setting: one member switched it off, approved their own wave, switched it back on."""
    with pytest.raises(ValidationError, match="Unknown setting"):
        programme_settings_update(actor=officer, four_eyes=False)
    with pytest.raises(PermissionDenied, match="another member"):
        wave_approve(wave=agreed, actor=officer)


def test_whoever_changed_an_approved_wave_cannot_re_approve_it_alone(
    agreed, officer, approver, org_a, org_b, admin_a
):
    """Approved by a second person, then changed by that person (a no-go and a go recorded on the trusts'
    behalf): the wave goes back to proposed, and its changer may not approve it again."""
    wave_approve(wave=agreed, actor=approver)
    wave_no_go(wave=agreed, organisation=org_b, actor=approver, reason="Their service desk is short-staffed")
    wave_go(wave=agreed, organisation=org_a, actor=approver, reason="Told on the phone")
    agreed.refresh_from_db()
    assert agreed.status == "proposed" and (agreed.proposed_by, agreed.changed_by) == (approver, approver)
    with pytest.raises(PermissionDenied, match="another member"):
        wave_approve(wave=agreed, actor=approver)
    assert wave_approve(wave=agreed, actor=officer).status == "approved"  # the second pair of eyes


def test_a_go_recorded_on_a_trusts_behalf_needs_someone_else_to_approve(
    proposed, officer, approver, org_a, org_b, db
):
    wave_go(wave=proposed, organisation=org_a, actor=approver, reason="By email")
    wave_go(wave=proposed, organisation=org_b, actor=approver, reason="By email")
    with pytest.raises(PermissionDenied, match="changed this wave last"):
        wave_approve(wave=proposed, actor=approver)
    third = UserFactory(role="programme_office")
    assert wave_approve(wave=proposed, actor=third).status == "approved"


def test_approval_stamps_the_wave_on_its_mailboxes(agreed, approver):
    wave_approve(wave=agreed, actor=approver, reason="Capacity checked")
    agreed.refresh_from_db()
    assert (agreed.status, agreed.approved_by) == ("approved", approver)
    assert agreed.stamped_at is not None
    assert Mailbox.objects.filter(wave=agreed, state="scheduled").count() == 5
    assert wave_totals(agreed)["mailboxes"] == 5
    event = Event.objects.get(action="wave.approve")
    assert event.data["stamped"] == 5 and event.actor == approver


def test_no_go_after_approval_releases_and_sends_back(agreed, approver, org_b, admin_b):
    wave_approve(wave=agreed, actor=approver)
    wave_no_go(wave=agreed, organisation=org_b, actor=admin_b, reason="Ward move")
    agreed.refresh_from_db()
    assert agreed.status == "proposed"
    assert Mailbox.objects.filter(organisation=org_b, state="ready", wave__isnull=True).count() == 2
    assert Mailbox.objects.filter(wave=agreed, state="scheduled").count() == 3


def test_reject_sends_it_back_to_draft_with_a_reason(proposed, approver):
    with pytest.raises(ValidationError):
        wave_reject(wave=proposed, actor=approver, reason="")
    wave_reject(wave=proposed, actor=approver, reason="Clashes with the pathology cutover")
    proposed.refresh_from_db()
    assert proposed.status == "draft" and proposed.proposed_by is None
    assert Decision.objects.filter(kind="reject", reason__startswith="Clashes").exists()


def test_pause_resume_cancel(agreed, approver, officer):
    wave_approve(wave=agreed, actor=approver)
    with pytest.raises(ValidationError):
        wave_pause(wave=agreed, actor=officer, reason="")
    wave_pause(wave=agreed, actor=officer, reason="Major incident")
    agreed.refresh_from_db()
    assert (agreed.status, agreed.paused_from) == ("paused", "approved")
    with pytest.raises(WaveConflict):
        wave_pause(wave=agreed, actor=officer, reason="again")
    wave_resume(wave=agreed, actor=officer)
    agreed.refresh_from_db()
    assert (agreed.status, agreed.paused_from) == ("approved", "")
    wave_cancel(wave=agreed, actor=officer, reason="Programme re-sequenced")
    agreed.refresh_from_db()
    assert agreed.status == "cancelled"
    assert not Mailbox.objects.filter(wave=agreed).exists()
    assert Mailbox.objects.filter(state="ready", wave__isnull=True).count() == 5
    kinds = list(Decision.objects.filter(wave=agreed).values_list("kind", flat=True))
    assert kinds == ["propose", "go", "go", "approve", "pause", "resume", "cancel"]
    assert Event.objects.filter(wave=agreed.pk, action__startswith="wave.").count() == 7


def test_a_cancelled_or_completed_wave_cannot_be_cancelled_again(wave, officer):
    wave_cancel(wave=wave, actor=officer, reason="Not needed")
    with pytest.raises(WaveConflict):
        wave_cancel(wave=wave, actor=officer, reason="Not needed")
    Wave.objects.filter(pk=wave.pk).update(status="completed")
    with pytest.raises(WaveConflict):
        wave_propose(wave=Wave.objects.get(pk=wave.pk), actor=officer)


def test_the_conditional_update_beats_a_stale_object(agreed, approver, db):
    """Two approvers holding the same (now stale) object: exactly one approval counts, on any database."""
    from tests.factories import UserFactory

    second = UserFactory(username="approver2", role="programme_office")
    stale = Wave.objects.get(pk=agreed.pk)
    wave_approve(wave=agreed, actor=approver)
    assert stale.status == "proposed"
    with pytest.raises(WaveConflict, match="approved now"):
        wave_approve(wave=stale, actor=second)
    assert Decision.objects.filter(wave=agreed, kind="approve").count() == 1
    assert Wave.objects.get(pk=agreed.pk).approved_by == approver
