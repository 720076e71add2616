"""A person's actions on a mailbox: retry, roll back, cancel, pause, resume, and the programme office's
"retry every failure with this code" for a wave. Each is a conditional UPDATE with its event."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from migrations_app.models import Mailbox, User, Wave
from migrations_app.selectors.scoping import require_administer
from migrations_app.services.events import event_record
from migrations_app.services.execution.clock import wave_pump_later
from migrations_app.services.execution.completion import waves_after_retry, waves_lock_for_retry
from migrations_app.services.execution.states import (
    ACTIVE_STATES,
    CANCELLABLE,
    PAUSABLE,
    RETRYABLE,
    ROLLBACKABLE,
    M,
    MailboxConflict,
    W,
)


def _person_move(
    mailbox: Mailbox,
    actor: User,
    from_states: tuple[str, ...],
    to_state: str,
    action: str,
    reason: str,
    **fields,
) -> Mailbox:
    before = mailbox.state
    now = timezone.now()
    updated = Mailbox.objects.filter(pk=mailbox.pk, state__in=from_states).update(
        state=to_state, updated_at=now, **fields
    )
    if not updated:
        current = Mailbox.objects.filter(pk=mailbox.pk).values_list("state", flat=True).first()
        allowed = " or ".join(from_states)
        raise MailboxConflict(
            f"{mailbox.email} is {current} now, and this needs it {allowed}: reload to see the latest"
        )
    wave = mailbox.wave
    mailbox.refresh_from_db()
    event_record(
        action=action,
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=wave,
        subject=mailbox.email,
        from_state=before if before in from_states else from_states[0],
        to_state=to_state,
        message=reason,
    )
    return mailbox


_CLEARED = {"attempts": 0, "retry_at": None, "last_error_code": "", "last_error_message": "", "lease": ""}


@transaction.atomic
def mailbox_retry(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """A failed mailbox goes back to scheduled (its checkpoint kept, so the copy resumes). A trust admin for
    their own organisation's mailboxes; the programme office for any."""
    require_administer(actor, mailbox.organisation)
    to_state = M.SCHEDULED if mailbox.wave_id else M.READY
    waves = waves_lock_for_retry([mailbox.wave_id])
    mailbox = _person_move(mailbox, actor, RETRYABLE, to_state, "mailbox.retried", reason, **_CLEARED)
    retried = [(mailbox.pk, mailbox.organisation_id, mailbox.wave_id, mailbox.email)]
    # a completed wave runs again (window open) or carries it over (closed); a running one takes it now
    for wave_id in waves_after_retry(waves=waves, retried=retried, actor=actor, now=timezone.now()):
        transaction.on_commit(lambda wave_id=wave_id: wave_pump_later(wave_id))
    mailbox.refresh_from_db()
    return mailbox


_RUNNING_MESSAGE = "it is being copied now: pause it first, and act once it has stopped (within seconds)"


def _refuse_running(mailbox: Mailbox) -> None:
    if mailbox.state in ACTIVE_STATES:
        raise MailboxConflict(f"{mailbox.email} is {mailbox.get_state_display().lower()}: {_RUNNING_MESSAGE}")


@transaction.atomic
def mailbox_rollback(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Back to ready and out of its wave, to be planned again: before its cutover (scheduled, synced,
    failed) or after it (migrated: a reason is required). A switched mailbox is switched back first, so its
    mail is delivered to the old system again before it leaves its wave.
    The checkpoint is kept, so its next copy is incremental. Never while a worker is copying it."""
    if mailbox.state == M.MIGRATED and not reason.strip():
        raise ValidationError("Give the reason for rolling back a migrated mailbox")
    if mailbox.switch_status in (Mailbox.SwitchStatus.REQUESTED, Mailbox.SwitchStatus.SWITCHED):
        # Its mail goes to Exchange Online (or may): switch it back first; the roll back completes when the
        # source receives its mail again (execution/switch_actions.py).
        from migrations_app.services.execution.switch_actions import unswitch_then_roll_back

        return unswitch_then_roll_back(mailbox=mailbox, actor=actor, reason=reason or "rolled back")
    return _out_of_wave(mailbox, actor, ROLLBACKABLE, "mailbox.rolled_back", reason)


def _out_of_wave(mailbox: Mailbox, actor: User, from_states: tuple, action: str, reason: str) -> Mailbox:
    """Back to ready and out of its wave (checkpoint kept), refused while a worker copies it."""
    require_administer(actor, mailbox.organisation)
    _refuse_running(mailbox)
    fields = {"wave": None, "carried_over": False, "paused": False, **_CLEARED}
    return _person_move(mailbox, actor, from_states, M.READY, action, reason, **fields)


@transaction.atomic
def mailbox_cancel(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Take a mailbox out of its wave before its cutover: back to ready, to be planned again (its
    checkpoint kept). Never while a worker is copying it: pause first."""
    return _out_of_wave(mailbox, actor, CANCELLABLE, "mailbox.cancelled", reason)


@transaction.atomic
def mailbox_pause(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Hold a mailbox: it is not claimed until resumed. One being copied stops at its next progress report
    (within seconds), keeps its checkpoint and goes back to scheduled (or synced, in its cutover)."""
    require_administer(actor, mailbox.organisation)
    updated = Mailbox.objects.filter(pk=mailbox.pk, state__in=PAUSABLE, paused=False).update(
        paused=True, updated_at=timezone.now()
    )
    mailbox.refresh_from_db()
    if not updated:
        if mailbox.paused:
            raise MailboxConflict(f"{mailbox.email} is already paused")
        raise MailboxConflict(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: only a mailbox waiting for or in "
            "its copy can be paused"
        )
    event_record(
        action="mailbox.paused",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=mailbox.wave,
        subject=mailbox.email,
        message=reason,
        data={"state": mailbox.state},
    )
    return mailbox


@transaction.atomic
def mailbox_resume(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """Release a paused mailbox: claimed again with its wave's next free slot (resuming from its
    checkpoint)."""
    require_administer(actor, mailbox.organisation)
    if not Mailbox.objects.filter(pk=mailbox.pk, paused=True).update(paused=False, updated_at=timezone.now()):
        raise MailboxConflict(f"{mailbox.email} is not paused")
    mailbox.refresh_from_db()
    event_record(
        action="mailbox.resumed",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=mailbox.wave,
        subject=mailbox.email,
        message=reason,
    )
    if mailbox.wave_id and mailbox.wave.status == W.RUNNING:
        transaction.on_commit(lambda: wave_pump_later(mailbox.wave_id))
    return mailbox


@transaction.atomic
def wave_retry_failures(*, wave: Wave, actor: User, code: str, reason: str = "") -> int:
    """Retry every failed mailbox of the wave with this error code (after the cause is fixed: credentials
    corrected, targets provisioned). Programme office only. Set-based (services.failures)."""
    from migrations_app.services.failures import failures_retry

    return failures_retry(actor=actor, code=code, reason=reason, wave=wave)
