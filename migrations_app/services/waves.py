"""The wave approval workflow: propose, go / no-go, approve, reject, pause, resume, cancel.

Every transition is one conditional UPDATE on the wave's current status, so when two people act at the same
moment exactly one of them wins and the other gets WaveConflict. Every decision is a Decision row and an
Event, in the same transaction as the change.

    draft --propose--> proposed --approve--> approved --(runs)--> running --> completed
      ^                  |  ^                  |   \\--pause--> paused --resume--> (approved / running)
      '-----reject-------'  '---any change-----'
    draft / proposed / approved / paused --cancel--> cancelled
"""

from __future__ import annotations

import copy

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from migrations_app.models import Allocation, Decision, Mailbox, Organisation, ProgrammeSettings, User, Wave
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.selectors.waves import (
    allocation_matches,
    wave_allocated_organisation_ids,
    wave_missing_go,
    wave_organisation_ids,
    wave_totals,
)
from migrations_app.services.events import event_record
from migrations_app.services.gate import gate_check_approval
from migrations_app.services.readiness.stages import organisations_stage_on_approval
from migrations_app.templatetags import filesizeformat_binary

S = Wave.Status


class WaveConflict(ValidationError):
    """The wave was not in the status the action needs: usually someone else acted first."""


def _status_label(value: str) -> str:
    return S(value).label.lower() if value in S.values else value


def _transition(wave: Wave, *, from_statuses: tuple[str, ...], to_status, **fields) -> str:
    """The conditional UPDATE at the heart of every action. Returns the status the wave had."""
    before = wave.status
    updated = Wave.objects.filter(pk=wave.pk, status__in=from_statuses).update(
        status=to_status, updated_at=timezone.now(), **fields
    )
    if not updated:
        current = Wave.objects.filter(pk=wave.pk).values_list("status", flat=True).first()
        wave.status = current or wave.status
        allowed = " or ".join(_status_label(s) for s in from_statuses)
        raise WaveConflict(
            f"{wave.name} is {_status_label(current or '')} now, and this needs it {allowed}. "
            "Someone may have acted on it just before you: reload to see the latest."
        )
    wave.refresh_from_db()
    return before if before in from_statuses else from_statuses[0]


def _decide(
    wave: Wave,
    kind: str,
    actor: User,
    *,
    reason: str = "",
    organisation: Organisation | None = None,
    from_state: str = "",
    data: dict | None = None,
) -> Decision:
    decision = Decision.objects.create(
        wave=wave, organisation=organisation, kind=kind, actor=actor, reason=reason
    )
    event_record(
        action=f"wave.{kind}",
        actor=actor,
        organisation=organisation,
        wave=wave,
        subject=wave.name if organisation is None else f"{organisation.ods_code} in {wave.name}",
        from_state=from_state,
        to_state=wave.status,
        message=reason,
        data={"decision": decision.pk, **(data or {})},
    )
    return decision


def _require_reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": f"Give a reason for the {what}"})
    return reason


def wave_refresh_totals(*, wave: Wave) -> Wave:
    """Keep the wave's counters (what lists show) in step with its members."""
    totals = wave_totals(wave)
    Wave.objects.filter(pk=wave.pk).update(
        planned_mailboxes=totals["mailboxes"], planned_bytes=totals["bytes"]
    )
    wave.planned_mailboxes, wave.planned_bytes = totals["mailboxes"], totals["bytes"]
    return wave


def _mark_changed(wave: Wave, actor: User | None) -> None:
    """Remember who last changed what the wave holds: four eyes keeps them from approving it."""
    if actor is not None and actor.pk:
        Wave.objects.filter(pk=wave.pk).update(changed_by=actor)
        wave.changed_by_id = actor.pk


def four_eyes_refusal(wave: Wave, actor: User) -> str | None:
    """Why `actor` may not approve `wave` under four eyes, or None. Four eyes is a deployment setting
    (WAVE_FOUR_EYES), not a button: one member of the programme office cannot switch it off, approve their own
    wave and switch it back on. The approver must differ from the proposer and from whoever last changed the
    wave's content (a change after approval, a go recorded on a trust's behalf)."""
    if not django_settings.WAVE_FOUR_EYES:
        return None
    if wave.changed_by_id == actor.pk and wave.proposed_by_id != actor.pk:
        return "You changed this wave last: another member of the programme office must approve it"
    if wave.proposed_by_id == actor.pk or wave.changed_by_id == actor.pk:
        return "You proposed this wave: another member of the programme office must approve it"
    return None


def wave_changed(*, wave: Wave, actor: User | None, reason: str) -> Wave:
    """Any change to what a wave holds is remembered (four eyes); an approved wave is frozen, so the change also
    sends it back to proposed for a new approval."""
    _mark_changed(wave, actor)
    if wave.status != S.APPROVED:
        return wave
    # the changed wave is the changer's proposal now (not the original proposer's, who may check it)
    proposer = {"proposed_by": actor} if actor is not None and actor.pk else {}
    _transition(
        wave,
        from_statuses=(S.APPROVED,),
        to_status=S.PROPOSED,
        approved_by=None,
        approved_at=None,
        **proposer,
    )
    event_record(
        action="wave.unfrozen",
        actor=actor,
        wave=wave,
        subject=wave.name,
        from_state=S.APPROVED,
        to_state=S.PROPOSED,
        message=f"Changed after approval ({reason}): it needs approving again",
    )
    return wave


def _check_capacity(wave: Wave) -> dict[str, int]:
    totals = wave_totals(wave)
    if totals["mailboxes"] > wave.capacity_mailboxes or totals["bytes"] > wave.capacity_bytes:
        raise ValidationError(
            f"{wave.name} holds {totals['mailboxes']:,} mailboxes and {filesizeformat_binary(totals['bytes'])}, "
            f"over its capacity of {wave.capacity_mailboxes:,} mailboxes and "
            f"{filesizeformat_binary(wave.capacity_bytes)}: move an "
            "organisation out first"
        )
    return totals


@transaction.atomic
def wave_propose(*, wave: Wave, actor: User, reason: str = "") -> Wave:
    require_programme_office(actor)
    before = _transition(
        wave, from_statuses=(S.DRAFT,), to_status=S.PROPOSED, proposed_by=actor, changed_by=actor
    )
    totals = _check_capacity(wave)  # raising rolls the transition back
    if not totals["mailboxes"]:
        raise ValidationError(f"{wave.name} has no mailboxes to propose")
    wave_refresh_totals(wave=wave)
    _decide(wave, Decision.Kind.PROPOSE, actor, reason=reason, from_state=before, data=totals)
    return wave


def _require_in_wave(wave: Wave, organisation: Organisation) -> None:
    if organisation.pk not in wave_organisation_ids(wave):
        raise ValidationError(f"{organisation.ods_code} is not in {wave.name}")


@transaction.atomic
def wave_go(*, wave: Wave, organisation: Organisation, actor: User, reason: str = "") -> Decision:
    """An organisation agrees to its date (a trust admin for their own organisation). The programme office may
    record it on the organisation's behalf only with a reason: who confirmed it, and how."""
    require_administer(actor, organisation)
    if actor.is_programme_office:
        reason = _require_reason(reason, "go on the organisation's behalf (who confirmed it, and how)")
    # Touch the wave under its status condition: serialises with approval, no-go and moves.
    before = _transition(wave, from_statuses=(S.PROPOSED, S.APPROVED), to_status=F("status"))
    _require_in_wave(wave, organisation)
    if actor.is_programme_office:
        _mark_changed(wave, actor)  # a go on a trust's behalf: someone else must approve
    return _decide(wave, Decision.Kind.GO, actor, reason=reason, organisation=organisation, from_state=before)


@transaction.atomic
def wave_no_go(*, wave: Wave, organisation: Organisation, actor: User, reason: str) -> Decision:
    """An organisation cannot move in this wave: it leaves the wave and its mailboxes are ready again."""
    require_administer(actor, organisation)
    reason = _require_reason(reason, "no-go")
    before = _transition(wave, from_statuses=(S.PROPOSED, S.APPROVED), to_status=F("status"))
    _require_in_wave(wave, organisation)
    removed_allocations, _ = Allocation.objects.filter(wave=wave, organisation=organisation).delete()
    released = Mailbox.objects.filter(
        wave=wave, organisation=organisation, state__in=[Mailbox.State.READY, Mailbox.State.SCHEDULED]
    ).update(wave=None, state=Mailbox.State.READY, updated_at=timezone.now())
    wave_changed(wave=wave, actor=actor, reason=f"{organisation.ods_code} said no-go")
    wave_refresh_totals(wave=wave)
    return _decide(
        wave,
        Decision.Kind.NO_GO,
        actor,
        reason=reason,
        organisation=organisation,
        from_state=before,
        data={"allocations_removed": removed_allocations, "mailboxes_released": released},
    )


@transaction.atomic
def wave_approve(*, wave: Wave, actor: User, reason: str = "") -> Wave:
    """Approve a proposed wave and stamp it on its mailbox rows (one set-based UPDATE of at most a window's
    worth of rows). Four eyes: the approver must be neither the proposer nor whoever last changed the wave."""
    require_programme_office(actor)
    settings = ProgrammeSettings.load()
    refusal = four_eyes_refusal(wave, actor)
    if refusal:
        raise PermissionDenied(refusal)
    now = timezone.now()
    before = _transition(
        wave, from_statuses=(S.PROPOSED,), to_status=S.APPROVED, approved_by=actor, approved_at=now
    )
    # Checked after the conditional UPDATE: the wave row is locked now, so no go / no-go or move slips in.
    # Membership is read as it was while proposed (allocations still count), on a copy.
    as_proposed = copy.copy(wave)
    as_proposed.status = S.PROPOSED
    refusal = four_eyes_refusal(wave, actor)  # again, on the locked row: no change slipped in meanwhile
    if refusal:
        raise PermissionDenied(refusal)
    if settings.go_required_from_every_organisation:
        missing = wave_missing_go(as_proposed)
        if missing:
            codes = list(Organisation.objects.filter(pk__in=missing[:10]).values_list("ods_code", flat=True))
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ValidationError(
                f"{len(missing)} organisation(s) have not said go yet: {', '.join(codes)}{more}"
            )
    gate_check_approval(wave=as_proposed)  # the support-rate gate (services/gate.py)
    totals = _check_capacity(as_proposed)
    stamped = _stamp(wave)
    organisations_stage_on_approval(wave=wave, actor=actor)
    Wave.objects.filter(pk=wave.pk).update(stamped_at=now)
    wave.stamped_at = now
    wave_refresh_totals(wave=wave)
    _decide(
        wave,
        Decision.Kind.APPROVE,
        actor,
        reason=reason,
        from_state=before,
        data={**totals, "stamped": stamped},
    )
    return wave


def _stamp(wave: Wave) -> int:
    """Give the wave's mailboxes their wave and the scheduled state: one UPDATE over the allocation-covered
    ready mailboxes (found through the (organisation, state, id) index) and the ones already pinned."""
    condition = Q(wave=wave)
    org_ids = wave_allocated_organisation_ids(wave)
    if org_ids:
        covered = allocation_matches(
            Allocation.objects.filter(wave=wave, organisation_id=OuterRef("organisation_id"))
        )
        condition |= Q(wave__isnull=True, organisation_id__in=org_ids) & Q(Exists(covered))
    return Mailbox.objects.filter(condition, state=Mailbox.State.READY).update(
        wave=wave, state=Mailbox.State.SCHEDULED, updated_at=timezone.now()
    )


@transaction.atomic
def wave_reject(*, wave: Wave, actor: User, reason: str) -> Wave:
    """Send a proposed wave back to draft, with the reason."""
    require_programme_office(actor)
    reason = _require_reason(reason, "rejection")
    before = _transition(
        wave, from_statuses=(S.PROPOSED,), to_status=S.DRAFT, proposed_by=None, changed_by=None
    )
    _decide(wave, Decision.Kind.REJECT, actor, reason=reason, from_state=before)
    return wave


@transaction.atomic
def wave_pause(*, wave: Wave, actor: User, reason: str) -> Wave:
    require_programme_office(actor)
    reason = _require_reason(reason, "pause")
    before = _transition(
        wave, from_statuses=(S.APPROVED, S.RUNNING), to_status=S.PAUSED, paused_from=F("status")
    )
    _decide(wave, Decision.Kind.PAUSE, actor, reason=reason, from_state=before)
    return wave


@transaction.atomic
def wave_resume(*, wave: Wave, actor: User, reason: str = "") -> Wave:
    require_programme_office(actor)
    before = _transition(wave, from_statuses=(S.PAUSED,), to_status=F("paused_from"), paused_from="")
    _decide(wave, Decision.Kind.RESUME, actor, reason=reason, from_state=before)
    return wave


@transaction.atomic
def wave_cancel(*, wave: Wave, actor: User, reason: str) -> Wave:
    """Cancel a wave that has not started moving mail: its mailboxes are ready again for another wave. A running
    wave is paused first; mailboxes it had started (syncing, synced, failed) are carried over, as when a
    window closes, for the programme office to place in another wave; those already cutting over finish."""
    require_programme_office(actor)
    reason = _require_reason(reason, "cancellation")
    before = _transition(
        wave, from_statuses=(S.DRAFT, S.PROPOSED, S.APPROVED, S.PAUSED), to_status=S.CANCELLED
    )
    released = Mailbox.objects.filter(
        wave=wave, state__in=[Mailbox.State.READY, Mailbox.State.SCHEDULED]
    ).update(wave=None, state=Mailbox.State.READY, updated_at=timezone.now())
    from migrations_app.services.execution.clock import wave_carry_over  # execution imports this module

    carried = wave_carry_over(wave=wave, why=f"{wave.name} was cancelled")
    wave_refresh_totals(wave=wave)
    _decide(
        wave,
        Decision.Kind.CANCEL,
        actor,
        reason=reason,
        from_state=before,
        data={"mailboxes_released": released, "mailboxes_carried_over": carried},
    )
    return wave


# name -> (service, needs an organisation, needs a reason, destructive: confirm first)
ACTIONS = {
    "propose": (wave_propose, False, False, False),
    "go": (wave_go, True, False, False),
    "no-go": (wave_no_go, True, True, True),
    "approve": (wave_approve, False, False, False),
    "reject": (wave_reject, False, True, True),
    "pause": (wave_pause, False, True, True),
    "resume": (wave_resume, False, False, False),
    "cancel": (wave_cancel, False, True, True),
}


def wave_act(
    *, wave: Wave, action: str, actor: User, reason: str = "", organisation: Organisation | None = None
):
    """One entry point for pages and the API: the named action, with its arguments."""
    if action not in ACTIONS:
        raise ValidationError(f"Unknown action {action}")
    service, needs_org, _, _ = ACTIONS[action]
    if needs_org:
        if organisation is None:
            raise ValidationError({"organisation": "Choose the organisation this decision is for"})
        return service(wave=wave, organisation=organisation, actor=actor, reason=reason)
    return service(wave=wave, actor=actor, reason=reason)
