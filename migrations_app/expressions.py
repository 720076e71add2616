"""SQL expressions the models use as database defaults."""

from django.db.models import BigIntegerField, Func


class CurrentTransactionId(Func):
    """The inserting transaction's id: on PostgreSQL `pg_current_xact_id()`, the 64-bit xid8 that never wraps
    round; 0 elsewhere (SQLite has one writer at a time, so ids are already in commit order there).

    Used as Event.txid's database default: the event feed reads up to a visibility horizon in transaction
    order (selectors/feed.py, docs/adr/012-event-feed-visibility-horizon.md)."""

    template = "0"
    output_field = BigIntegerField()
    allowed_default = True

    def as_postgresql(self, compiler, connection, **extra_context):
        return "(pg_current_xact_id()::text::bigint)", []


class VisibilityHorizon(Func):
    """PostgreSQL only: the lowest transaction id that may still add events to this database. Every
    transaction with a lower id has finished, and none can be given a lower id from now on
    (selectors/feed.py).

    That is the statement's snapshot's xmin, except that transaction ids are shared by every database of the
    cluster: a transaction that pg_stat_activity shows working in *another* database cannot write our events,
    so it does not hold the feed back (a test run or a report on a neighbouring database would otherwise stall
    it for as long as it runs). Only transactions positively seen elsewhere are left out: one that finished
    meanwhile, a prepared transaction, or one whose database cannot be read still counts. pg_stat_activity
    is read after the snapshot was taken, and a transaction id never moves between databases, so a stale
    view of it only ever counts more."""

    template = (
        "(SELECT LEAST(pg_snapshot_xmax(snap)::text::bigint, ("
        "SELECT MIN(x::text::bigint) FROM pg_snapshot_xip(snap) AS x"
        " WHERE mod(x::text::bigint, 4294967296) NOT IN ("
        "SELECT a.backend_xid::text::bigint FROM pg_stat_activity AS a"
        " WHERE a.datname <> current_database() AND a.backend_xid IS NOT NULL)))"
        " FROM pg_current_snapshot() AS snap)"
    )
    output_field = BigIntegerField()


class OwnTransactionId(Func):
    """PostgreSQL only: this transaction's id, or NULL if it has written nothing yet."""

    template = "pg_current_xact_id_if_assigned()::text::bigint"
    output_field = BigIntegerField()
