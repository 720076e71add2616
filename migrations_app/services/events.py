"""The audit trail's one writer. Every service that changes state or records a human action calls this."""

from collections.abc import Iterable
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


def event_record_many(rows: Iterable[dict[str, Any]]) -> int:
    """Append many events in one INSERT: the execution engine's transitions, recorded by id (the workers
    hold ids, not loaded objects). Each row has event_record's fields with `<name>_id` for the references."""
    events = [
        Event(
            **{
                **row,
                "subject": row.get("subject", "")[:254],
                "from_state": row.get("from_state", "")[:20],
                "to_state": row.get("to_state", "")[:20],
                "data": row.get("data") or {},
            }
        )
        for row in rows
    ]
    Event.objects.bulk_create(events, batch_size=1000)
    return len(events)
