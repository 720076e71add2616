"""The event feed's reads: events in the order their transactions began, up to a horizon that no running
transaction can fall behind, so a consumer paging with a cursor never misses one.

Event ids are handed out at INSERT, not at COMMIT: with workers committing concurrently, id 10 can become
visible after id 11, and a consumer that read 11 and moved its cursor past it would skip 10 for good. Each
event also records its transaction's id (`txid`, PostgreSQL's xid8). Every transaction with an id below the
snapshot's xmin has finished (the snapshot leaves out the reader's own), and no later transaction can ever be given an id below it, so the set of events
with `txid < xmin` only grows at its end when read in (txid, id) order. The feed serves that set and no more;
the cursor is the last (txid, id) served, found again from the last event id the consumer holds.

An event therefore reaches the feed once the oldest write transaction still running when it committed has
finished (normally milliseconds; a minutes-long import holds the feed back for its duration, never loses
anything). On SQLite there is one writer at a time, ids are in commit order, and every txid is 0.
See docs/adr/012-event-feed-visibility-horizon.md."""

from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan

from migrations_app.expressions import OwnTransactionId, VisibilityHorizon
from migrations_app.models import Event


def events_visible_below_horizon(queryset: QuerySet[Event]) -> QuerySet[Event]:
    """Only events whose transactions, and every transaction that began before them, have finished; and the
    reading transaction's own (read-your-writes: a transaction that both writes events and serves the feed
    would be the one way round the horizon, and nothing in the portal does both)."""
    if connection.vendor != "postgresql":
        return queryset
    return queryset.filter(Q(txid__lt=VisibilityHorizon()) | Q(txid=OwnTransactionId()))


def event_cursor(event_id: int) -> tuple[int, int]:
    """The (txid, id) position of the event a consumer last read. An id that names no event (a cursor from
    before this scheme, or a made-up number) is placed after every event with a lower id."""
    if not event_id:
        return (0, 0)
    txid = Event.objects.filter(pk=event_id).values_list("txid", flat=True).first()
    if txid is None:
        txid = (
            Event.objects.filter(pk__lt=event_id).order_by("-id").values_list("txid", flat=True).first() or 0
        )
    return (txid, event_id)


def events_after(queryset: QuerySet[Event], *, txid: int, event_id: int) -> QuerySet[Event]:
    """The events after the cursor (txid, id), below the horizon, in feed order. A row comparison,
    `(txid, id) > (cursor)`, so PostgreSQL starts each partition's (…, txid, id) index at the cursor and stops
    after a page, however many events the cursor's own transaction wrote (a range on txid minus the cursor's
    transaction's earlier rows read all of them on every page: seconds for an import's million)."""
    after = TupleGreaterThan(Tuple(F("txid"), F("id")), (txid, event_id))
    return events_visible_below_horizon(queryset).filter(after).order_by("txid", "id")
