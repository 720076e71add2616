"""The event table's monthly partitions on PostgreSQL (docs/adr/029-event-partitions.md): beat makes this
month's and the next EVENT_PARTITIONS_MONTHS_AHEAD months' ahead of time, and /healthz says when an event has
landed in the default partition (a month nobody made) or the coming months are not there. SQLite keeps one
plain table: everything here reports "not partitioned" there.

The partitions are made by a database function that runs as the table's owner (the migration role), so the
portal's own role, which owns nothing, can call it from beat; it only ever creates empty tables."""

import datetime as dt
import logging

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from migrations_app.models import Event

logger = logging.getLogger(__name__)
LOCK_TIMEOUT_MS = 5000


def _partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [Event._meta.db_table])
        return cursor.fetchone()[0] == "p"


def event_partitions_ensure(*, since: dt.date | None = None, months_ahead: int | None = None) -> int:
    """Make the missing monthly partitions from `since`'s month (default: this month) to `months_ahead` months
    after this one; returns how many were made. A month whose events already sit in the default partition is
    left alone (with a database warning) and reported by event_partitions_status."""
    if not _partitioned():
        return 0
    ahead = settings.EVENT_PARTITIONS_MONTHS_AHEAD if months_ahead is None else months_ahead
    first = since or timezone.now().date()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Making a partition takes an ACCESS EXCLUSIVE lock on the event table for a moment. Queued behind
            # a long reader (an export), it would hold up every event INSERT behind it: give up instead, and
            # try again at the next beat (the months ahead leave months to spare).
            cursor.execute(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT_MS)}")
            cursor.execute("SELECT portal_event_partitions_ensure(%s, %s)", [first, ahead])
            return cursor.fetchone()[0]
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        logger.warning("event partitions not made: the event table is busy; beat tries again")
        return 0


def _month_after(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def event_partitions_status() -> dict:
    """What /healthz and operators need: the partitions that exist, whether this and next month have theirs,
    and how many events (counted up to 10,000) sit in the default partition. `ok` is false if any of that
    needs a person. Catalogue reads and one LIMITed count: cheap enough for every health check."""
    if not _partitioned():
        return {"partitioned": False, "ok": True}
    this_month = timezone.now().astimezone(dt.UTC).date().replace(day=1)
    wanted = [this_month, _month_after(this_month)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [Event._meta.db_table],
        )
        names = [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT portal_event_default_rows()")
        in_default = cursor.fetchone()[0]
    months = sorted(n.removeprefix("migrations_app_event_") for n in names if n[-1].isdigit())
    missing = [f"{m:%Y_%m}" for m in wanted if f"{m:%Y_%m}" not in months]
    return {
        "partitioned": True,
        "ok": not missing and not in_default,
        "partitions": len(months),
        "oldest_month": months[0].replace("_", "-") if months else None,
        "newest_month": months[-1].replace("_", "-") if months else None,
        "missing_months": [m.replace("_", "-") for m in missing],
        "default_partition_rows": in_default,
    }
