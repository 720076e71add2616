"""People adjusting the plan: move an organisation or a mailbox between waves that can still change, and place
a wave's carried-over mailboxes in another wave. Warnings (capacity, blackouts, preference) stop a move
unless it is confirmed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from migrations_app.models import Allocation, Mailbox, Organisation, User, Wave
from migrations_app.planning.calendar import LONDON
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.selectors.waves import organisation_allowed_kinds, wave_totals
from migrations_app.services.events import event_record
from migrations_app.templatetags import filesizeformat_binary

MOVABLE_INTO = (Wave.Status.DRAFT, Wave.Status.PROPOSED, Wave.Status.APPROVED)


@dataclass
class MoveResult:
    moved: bool
    warnings: list[str]


def _capacity_warnings(wave: Wave, add_mailboxes: int, add_bytes: int) -> list[str]:
    totals = wave_totals(wave)
    warnings = []
    mailboxes, size = totals["mailboxes"] + add_mailboxes, totals["bytes"] + add_bytes
    if mailboxes > wave.capacity_mailboxes:
        warnings.append(
            f"{wave.name} would hold {mailboxes:,} mailboxes, over its capacity of "
            f"{wave.capacity_mailboxes:,}"
        )
    if size > wave.capacity_bytes:
        warnings.append(
            f"{wave.name} would hold {filesizeformat_binary(size)}, over its capacity of "
            f"{filesizeformat_binary(wave.capacity_bytes)}"
        )
    return warnings


def _fit_warnings(wave: Wave, organisation: Organisation) -> list[str]:
    warnings = []
    starts = wave.starts_at.astimezone(LONDON).date()
    ends = wave.ends_at.astimezone(LONDON).date()
    if organisation.blackouts.filter(starts_on__lte=ends, ends_on__gte=starts).exists():
        warnings.append(f"{organisation.ods_code} has blackout dates during {wave.name}")
    if wave.kind not in organisation_allowed_kinds(organisation.preferred_window):
        warnings.append(
            f"{organisation.ods_code} prefers {organisation.get_preferred_window_display().lower()}"
        )
    return warnings


def _check_movable(wave: Wave, label: str) -> None:
    if wave.status not in MOVABLE_INTO:
        raise ValidationError(f"{label} {wave.name} is {wave.get_status_display().lower()}: it cannot change")


def _lock_movable(*waves: Wave) -> None:
    """Take the waves' row locks in id order with a conditional UPDATE on a status that allows changes, before
    touching mailboxes: an approval (wave row, then mailbox rows) can then never deadlock with a move, and
    a wave approved or cancelled meanwhile is refused (WaveConflict) instead of changed."""
    from migrations_app.services.waves import _transition

    for wave in sorted(waves, key=lambda w: w.pk):
        _transition(wave, from_statuses=tuple(MOVABLE_INTO), to_status=F("status"))


@transaction.atomic
def wave_move_organisation(
    *, actor: User, organisation: Organisation, source: Wave, target: Wave, confirm: bool = False
) -> MoveResult:
    """Move an organisation's part of one wave (its allocations and mailboxes) to another. With warnings
    (capacity, blackouts, preference) nothing moves unless confirm=True. An approved wave that changes goes
    back to proposed."""
    from migrations_app.selectors.waves import wave_members
    from migrations_app.services.waves import wave_changed, wave_refresh_totals

    require_programme_office(actor)
    if source.pk == target.pk:
        raise ValidationError("Choose a different wave to move to")
    _check_movable(source, "Wave")
    _check_movable(target, "Wave")
    part = (
        wave_members(source).filter(organisation=organisation).aggregate(n=Count("id"), b=Sum("size_bytes"))
    )
    if not part["n"]:
        raise ValidationError(f"{organisation.ods_code} has no mailboxes in {source.name}")
    warnings = _capacity_warnings(target, part["n"], part["b"] or 0) + _fit_warnings(target, organisation)
    if warnings and not confirm:
        return MoveResult(False, warnings)
    _lock_movable(source, target)
    Allocation.objects.filter(wave=source, organisation=organisation).update(wave=target)
    Mailbox.objects.filter(
        wave=source, organisation=organisation, state__in=[Mailbox.State.READY, Mailbox.State.SCHEDULED]
    ).update(wave=target, state=Mailbox.State.READY, updated_at=timezone.now())
    for wave in (source, target):
        wave_changed(wave=wave, actor=actor, reason=f"{organisation.ods_code} moved")
        wave_refresh_totals(wave=wave)
    event_record(
        action="wave.organisation_moved",
        actor=actor,
        organisation=organisation,
        wave=target,
        subject=organisation.ods_code,
        message=f"{organisation.ods_code} moved from {source.name} to {target.name}",
        data={"from_wave": source.pk, "to_wave": target.pk, "mailboxes": part["n"], "warnings": warnings},
    )
    return MoveResult(True, warnings)


@transaction.atomic
def wave_move_mailbox(*, actor: User, mailbox: Mailbox, target: Wave, confirm: bool = False) -> MoveResult:
    """Pin one mailbox to a wave (out of whatever allocation covered it)."""
    from migrations_app.selectors.waves import wave_of_mailbox
    from migrations_app.services.waves import wave_changed, wave_refresh_totals

    require_programme_office(actor)
    _check_movable(target, "Wave")
    if mailbox.state not in (Mailbox.State.READY, Mailbox.State.SCHEDULED):
        raise ValidationError(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: only ready or "
            "scheduled mailboxes can move"
        )
    source = wave_of_mailbox(mailbox)
    if source is not None and source.pk == target.pk:
        raise ValidationError(f"{mailbox.email} is already in {target.name}")
    if source is not None:
        _check_movable(source, "Wave")
    warnings = _capacity_warnings(target, 1, mailbox.size_bytes) + _fit_warnings(target, mailbox.organisation)
    if mailbox.affinity_group:
        warnings.append(
            f"{mailbox.email} is in affinity group {mailbox.affinity_group}: moving it alone splits the group"
        )
    if warnings and not confirm:
        return MoveResult(False, warnings)
    _lock_movable(*(w for w in (source, target) if w is not None))
    updated = Mailbox.objects.filter(
        pk=mailbox.pk, state__in=[Mailbox.State.READY, Mailbox.State.SCHEDULED]
    ).update(wave=target, state=Mailbox.State.READY, updated_at=timezone.now())
    if not updated:
        raise ValidationError(f"{mailbox.email} changed state meanwhile: try again")
    for wave in (w for w in (source, target) if w is not None):
        wave_changed(wave=wave, actor=actor, reason=f"{mailbox.email} moved")
        wave_refresh_totals(wave=wave)
    event_record(
        action="wave.mailbox_moved",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=target,
        subject=mailbox.email,
        message=f"{mailbox.email} moved to {target.name}" + (f" from {source.name}" if source else ""),
        data={"from_wave": source.pk if source else None, "to_wave": target.pk, "warnings": warnings},
    )
    return MoveResult(True, warnings)


@transaction.atomic
def wave_place_carried_over(*, actor: User, source: Wave, target: Wave, confirm: bool = False) -> MoveResult:
    """Give the mailboxes a wave carried over (not finished when its window closed) to another wave: they
    go back to ready, pinned to the target, with their checkpoints kept (their next copy is incremental)
    and their errors cleared; the target, if approved, goes back to proposed. Mailboxes still being
    copied stay where they are until their copy ends. With warnings (capacity, blackouts, preference)
    nothing moves unless confirm=True."""
    from migrations_app.services.events import event_record_many
    from migrations_app.services.waves import wave_changed, wave_refresh_totals

    require_programme_office(actor)
    if source.pk == target.pk:
        raise ValidationError("Choose a different wave to place them in")
    _check_movable(target, "Wave")
    waiting = Mailbox.objects.filter(wave=source, carried_over=True).exclude(
        state__in=(Mailbox.State.SYNCING, Mailbox.State.CUTOVER, Mailbox.State.VERIFYING)
    )
    part = waiting.aggregate(n=Count("id"), b=Sum("size_bytes"))
    if not part["n"]:
        raise ValidationError(f"{source.name} has no carried-over mailboxes waiting to be placed")
    warnings = _capacity_warnings(target, part["n"], part["b"] or 0)
    for organisation in Organisation.objects.filter(pk__in=waiting.values("organisation_id")).order_by(
        "ods_code"
    ):
        warnings += _fit_warnings(target, organisation)
    if warnings and not confirm:
        return MoveResult(False, warnings)
    _lock_movable(target)
    rows = list(
        waiting.select_for_update().order_by("id").values_list("id", "organisation_id", "email", "state")
    )
    Mailbox.objects.filter(pk__in=[r[0] for r in rows]).update(
        wave=target,
        state=Mailbox.State.READY,
        carried_over=False,
        paused=False,
        attempts=0,
        retry_at=None,
        lease="",
        last_error_code="",
        last_error_message="",
        updated_at=timezone.now(),
    )
    event_record_many(
        dict(
            action="mailbox.placed",
            actor_id=actor.pk,
            organisation_id=org_id,
            mailbox_id=pk,
            wave_id=target.pk,
            subject=email,
            from_state=state,
            to_state=Mailbox.State.READY,
            message=f"carried over from {source.name}, placed in {target.name}",
            data={"from_wave": source.pk},
        )
        for pk, org_id, email, state in rows
    )
    wave_changed(wave=target, actor=actor, reason=f"{len(rows)} carried-over mailbox(es) from {source.name}")
    wave_refresh_totals(wave=target)
    event_record(
        action="wave.carried_over_placed",
        actor=actor,
        wave=source,
        subject=source.name,
        message=f"{len(rows)} carried-over mailbox(es) placed in {target.name}",
        data={"to_wave": target.pk, "mailboxes": len(rows), "warnings": warnings},
    )
    return MoveResult(True, warnings)


def waves_refresh_planned(*, organisation_ids: Iterable[int]) -> int:
    """Draft and proposed waves holding these organisations recount their planned totals, after something
    took ready mailboxes out of them (a pilot picked them, a readiness check blocked them, they were retired).
    A few waves per organisation, each one GROUP BY over its members."""
    from migrations_app.selectors.waves import ALLOCATING_STATUSES
    from migrations_app.services.waves import wave_refresh_totals

    ids = sorted(set(organisation_ids))
    if not ids:
        return 0
    waves = Wave.objects.filter(
        status__in=ALLOCATING_STATUSES, allocations__organisation_id__in=ids
    ).distinct()
    n = 0
    for wave in waves:
        wave_refresh_totals(wave=wave)
        n += 1
    return n
