"""The audit trail's one writer. Every service that changes state or records a human action calls this."""

from typing import Any

from migrations_app.models import Event, Mailbox, Organisation, User, Wave


def event_record(
    *,
    action: str,
    actor: User | None = None,
    organisation: Organisation | None = None,
    mailbox: Mailbox | None = None,
    wave: Wave | None = None,
    subject: str = "",
    from_state: str = "",
    to_state: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
) -> Event:
    """Append one event. It joins the caller's transaction, so a rolled-back action leaves no event."""
    if actor is not None and not actor.is_authenticated:  # AnonymousUser: record no actor
        actor = None
    return Event.objects.create(
        action=action,
        actor=actor,
        organisation=organisation,
        mailbox=mailbox,
        wave=wave,
        subject=subject[:254],
        from_state=from_state[:20],
        to_state=to_state[:20],
        message=message,
        data=data or {},
    )
