"""People's (and trusts' systems') actions on a mailbox's switch: confirm a switch that waits for a confirmation
(webhook, manual), and switch a mailbox back to the source (unswitch), which a roll back of a switched mailbox
does first. Each is a conditional UPDATE with its event; the remote call runs in a task."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from migrations_app.engines import EngineError
from migrations_app.models import Mailbox, User
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.services.events import event_record
from migrations_app.services.execution.actions import _out_of_wave
from migrations_app.services.execution.claims import _queue
from migrations_app.services.execution.states import ACTIVE_STATES, CUTOVER, ROLLBACKABLE, M, MailboxConflict
from migrations_app.services.execution.switch import switch_target, switcher_for
from migrations_app.switchers import Routing

S = Mailbox.SwitchStatus
STEP = Mailbox.CutoverStep
# A switched mailbox (or one whose switch may have been made) is switched back before it is rolled back.
UNSWITCH_FIRST = (S.REQUESTED, S.SWITCHED)
UNSWITCHABLE = ROLLBACKABLE


def _event(mailbox: Mailbox, actor: User | None, action: str, message: str = "", **data) -> None:
    event_record(
        action=action,
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=mailbox.wave,
        subject=mailbox.email,
        from_state=mailbox.state,
        to_state=mailbox.state,
        message=message,
        data=data,
    )


@transaction.atomic
def mailbox_switch_confirm(*, mailbox: Mailbox, actor: User, reason: str = "") -> Mailbox:
    """The mailbox's mail now goes where it was asked to: a waiting switch (switching -> cutover, switched; its
    catch-up delta is queued) or a waiting unswitch (then its roll back completes). The trust's system through
    the API (webhook switcher) or a person on the mailbox page (manual); the organisation's admins or the
    programme office."""
    require_administer(actor, mailbox.organisation)
    if mailbox.switch_status == S.UNSWITCHING:
        return _unswitched(mailbox, actor, reason or "switch back confirmed")
    now = timezone.now()
    updated = Mailbox.objects.filter(pk=mailbox.pk, state=M.SWITCHING).update(
        state=M.CUTOVER,
        switch_status=S.SWITCHED,
        switched_at=now,
        switch_deadline=None,
        cutover_step=STEP.CATCH_UP,
        lease="",
        heartbeat_at=now,
        updated_at=now,
    )
    if not updated:
        mailbox.refresh_from_db()
        raise MailboxConflict(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: only a mailbox waiting for its switch "
            "can be confirmed"
        )
    mailbox.refresh_from_db()
    event_record(
        action="mailbox.switched",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=mailbox.wave,
        subject=mailbox.email,
        from_state=M.SWITCHING,
        to_state=M.CUTOVER,
        message=reason or "switch confirmed",
        data={"method": _method(mailbox), "confirmed": True},
    )
    transaction.on_commit(lambda: _queue([[mailbox.pk]], CUTOVER))  # the catch-up delta
    return mailbox


def _method(mailbox: Mailbox) -> str:
    endpoint = mailbox.wave.source_endpoint if mailbox.wave_id else None
    return endpoint.switch_method if endpoint is not None else "simulated"


@transaction.atomic
def mailbox_unswitch(*, mailbox: Mailbox, actor: User, reason: str) -> Mailbox:
    """The programme office switches a mailbox back to the source (a reason is required), then it is rolled
    back out of its wave. A trust admin does the same by rolling back a switched mailbox (mailbox_rollback)."""
    require_programme_office(actor)
    return unswitch_then_roll_back(mailbox=mailbox, actor=actor, reason=reason)


def unswitch_then_roll_back(*, mailbox: Mailbox, actor: User, reason: str) -> Mailbox:
    """Route the mailbox's mail back to the source, then roll it back (out of its wave, ready to be planned
    again): the source receives its mail again before anything else changes. The switcher is called by a task;
    a switcher that confirms later waits for mailbox_switch_confirm. A reason is required."""
    require_administer(actor, mailbox.organisation)
    if not reason.strip():
        raise ValidationError("Give the reason for switching this mailbox back to the source")
    if mailbox.state in ACTIVE_STATES or mailbox.state == M.SWITCHING:
        raise MailboxConflict(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: wait until its cutover step finishes"
        )
    updated = Mailbox.objects.filter(
        pk=mailbox.pk, state__in=UNSWITCHABLE, switch_status__in=UNSWITCH_FIRST
    ).update(switch_status=S.UNSWITCHING, updated_at=timezone.now())
    if not updated:
        mailbox.refresh_from_db()
        raise MailboxConflict(f"{mailbox.email} is not switched: there is nothing to switch back")
    mailbox.refresh_from_db()
    _event(mailbox, actor, "mailbox.unswitch_requested", reason, method=_method(mailbox))
    from migrations_app.tasks import mailbox_unswitch as task

    transaction.on_commit(lambda: task.delay(mailbox.pk, actor.pk, reason))
    return mailbox


def mailbox_unswitch_run(*, mailbox_id: int, actor_id: int | None, reason: str) -> Mailbox | None:
    """The task: ask the source endpoint's switcher to deliver to the source again, and record what happened.
    Done (PowerShell): the roll back completes. Waiting (webhook, manual): until confirmed. Failed: the mailbox
    stays switched, with the error on its timeline, for a person to try again."""
    mailbox = (
        Mailbox.objects.select_related("organisation", "wave", "wave__source_endpoint")
        .filter(pk=mailbox_id, switch_status=S.UNSWITCHING)
        .first()
    )
    if mailbox is None:
        return None
    actor = User.objects.filter(pk=actor_id).first() if actor_id else None
    endpoint = mailbox.wave.source_endpoint if mailbox.wave_id else None
    switcher = switcher_for(endpoint)
    try:
        target = switch_target(mailbox, endpoint, direction="unswitch")
        outcome = switcher.unswitch([target])[mailbox.pk]
    except EngineError as error:
        outcome = error
    with transaction.atomic():
        if outcome == Routing.SOURCE:
            return _unswitched(mailbox, actor, reason)
        if outcome == Routing.PENDING:
            _event(mailbox, actor, "mailbox.unswitch_waiting", "waiting for the switch back to be confirmed")
            return mailbox
        code = getattr(outcome, "code", "SWITCH_FAILED")
        Mailbox.objects.filter(pk=mailbox.pk, switch_status=S.UNSWITCHING).update(
            switch_status=S.SWITCHED, updated_at=timezone.now()
        )
        _event(
            mailbox,
            actor,
            "mailbox.unswitch_failed",
            f"{code}: {getattr(outcome, 'message', outcome)}",
            code=code,
        )
        mailbox.refresh_from_db()
        return mailbox


def _unswitched(mailbox: Mailbox, actor: User | None, reason: str) -> Mailbox:
    """The source receives the mailbox's mail again: record it, then roll the mailbox back."""
    method = _method(mailbox)
    if not Mailbox.objects.filter(pk=mailbox.pk, switch_status=S.UNSWITCHING).update(
        switch_status=S.UNSWITCHED, switched_at=None, cutover_step="", updated_at=timezone.now()
    ):
        raise MailboxConflict(f"{mailbox.email} is not being switched back")
    mailbox.refresh_from_db()
    _event(mailbox, actor, "mailbox.unswitched", "new mail is delivered to the source again", method=method)
    if actor is None:
        return mailbox
    return _out_of_wave(
        mailbox,
        actor,
        ROLLBACKABLE,
        "mailbox.rolled_back",
        f"{reason} (switched back first: mail is delivered to the source again, by {method})",
    )
