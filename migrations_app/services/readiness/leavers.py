"""Leavers: a mailbox that left the inventory is *retired*, kept with its history (never deleted), never
planned and not counted as work left; it can be brought back. Refused while the mailbox is being moved."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from migrations_app.models import Mailbox, User
from migrations_app.selectors.scoping import require_administer
from migrations_app.services.events import event_record
from migrations_app.services.wave_moves import waves_refresh_planned

M = Mailbox.State
# Not in flight: nothing is being copied, nothing is scheduled to be.
RETIRABLE = (M.INVENTORIED, M.READY, M.BLOCKED, M.FAILED)
IN_FLIGHT = (M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.VERIFYING)


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": f"Give a reason to {what} the mailbox"})
    return reason


@transaction.atomic
def mailbox_retire(*, mailbox: Mailbox, actor: User, reason: str) -> Mailbox:
    require_administer(actor, mailbox.organisation)
    reason = _reason(reason, "retire")
    if mailbox.state in IN_FLIGHT:
        raise ValidationError(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: it is being moved, so it cannot be "
            "retired now. Cancel it from its wave first."
        )
    before = mailbox.state
    updated = Mailbox.objects.filter(pk=mailbox.pk, state__in=RETIRABLE).update(
        state=M.RETIRED, wave=None, updated_at=timezone.now()
    )
    if not updated:
        raise ValidationError(f"{mailbox.email} changed state meanwhile: reload and try again")
    mailbox.refresh_from_db()
    if before == M.READY:
        waves_refresh_planned(organisation_ids=[mailbox.organisation_id])
    event_record(
        action="mailbox.retired",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        subject=mailbox.email,
        from_state=before,
        to_state=M.RETIRED,
        message=reason,
    )
    return mailbox


@transaction.atomic
def mailbox_reinstate(*, mailbox: Mailbox, actor: User, reason: str) -> Mailbox:
    """Back to inventoried (it needs a new readiness check before it is planned)."""
    require_administer(actor, mailbox.organisation)
    reason = _reason(reason, "bring back")
    updated = Mailbox.objects.filter(pk=mailbox.pk, state=M.RETIRED).update(
        state=M.INVENTORIED, checked_at=None, blocked_code="", blocked_reason="", updated_at=timezone.now()
    )
    if not updated:
        raise ValidationError(f"{mailbox.email} is not retired")
    mailbox.refresh_from_db()
    event_record(
        action="mailbox.reinstated",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        subject=mailbox.email,
        from_state=M.RETIRED,
        to_state=M.INVENTORIED,
        message=reason,
    )
    return mailbox
