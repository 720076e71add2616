"""The mailbox counters (models.MailboxCounter): rebuilt set-based here, kept up to date by the triggers that
migration 0007_pages_counters installs on the mailbox table.

Why triggers rather than the services: mailbox rows change in a dozen places (the inventory import's COPY and
staging upserts, approval stamping a window's worth of rows, every execution transition, moves, roll-back, the
admin). A trigger sees every one of them, in the same transaction, so a count on a page can never drift from
the rows; a service that forgot to call a counter helper could. On PostgreSQL the triggers are
statement-level with transition tables: one INSERT ... SELECT ... GROUP BY per statement, whatever its size,
and an UPDATE that changes no counted column (progress reports, leases, heartbeats) writes nothing. On SQLite
(development, the default test run) they are row-level, which is what SQLite has.

The national initial load (services.imports, empty table, indexes deferred) switches the insert trigger off
for its COPY and calls counters_rebuild() afterwards, the way it rebuilds the indexes: one GROUP BY over the
2.1 million new rows instead of a transition table holding them all.
"""

import importlib
import logging

from django.db import connection

from migrations_app.models import Mailbox, MailboxCounter

COUNTER = MailboxCounter._meta.db_table
MAILBOX = Mailbox._meta.db_table
INSERT_TRIGGER = "mailbox_counter_insert"
SQLITE_TRIGGERS = ("mailbox_counter_insert", "mailbox_counter_update", "mailbox_counter_delete")
logger = logging.getLogger(__name__)

_GROUPED = f"""
    SELECT organisation_id, COALESCE(wave_id, 0), state, needed_attention, COUNT(*), COALESCE(SUM(size_bytes), 0)
    FROM {MAILBOX}
    GROUP BY organisation_id, COALESCE(wave_id, 0), state, needed_attention
"""


def counters_rebuild() -> None:
    """Recount every counter from the mailbox table in one GROUP BY (a full scan: for the initial load, for
    repair, and for the tests that check the triggers; never for a page)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {COUNTER}")
        cursor.execute(
            f"INSERT INTO {COUNTER} (organisation_id, wave_id, state, needed_attention, mailboxes, bytes) "
            + _GROUPED
        )


def counters_disable_insert_trigger() -> None:
    """PostgreSQL, inside the national load's transaction only (the DDL lock is held until COMMIT and undone by
    a rollback): the COPY skips the counters; counters_rebuild() follows it."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {MAILBOX} DISABLE TRIGGER {INSERT_TRIGGER}")


def counters_enable_insert_trigger() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {MAILBOX} ENABLE TRIGGER {INSERT_TRIGGER}")


def counters_fresh() -> dict[tuple, tuple[int, int]]:
    """{(organisation, wave or 0, state, needed_attention): (mailboxes, bytes)} straight from the mailbox
    table: what the counters must equal (tests and repair checks)."""
    with connection.cursor() as cursor:
        cursor.execute(_GROUPED)
        return {(o, w, s, bool(a)): (n, b) for o, w, s, a, n, b in cursor.fetchall()}


def counters_current() -> dict[tuple, tuple[int, int]]:
    """The counters as stored, zero rows left out."""
    rows = MailboxCounter.objects.exclude(mailboxes=0, bytes=0).values_list(
        "organisation_id", "wave_id", "state", "needed_attention", "mailboxes", "bytes"
    )
    return {(o, w, s, bool(a)): (n, b) for o, w, s, a, n, b in rows}


def counters_ensure_sqlite_triggers(*, using=None, **_kwargs) -> None:
    """After every migrate on SQLite (post_migrate): put back any counter trigger a later migration dropped.

    Django's SQLite schema editor rebuilds a table (new table, copy, drop, rename) for many ALTERs, and the
    triggers of the old table go with it, silently. PostgreSQL keeps triggers across ALTER TABLE, so this is
    SQLite only. A trigger found missing means the counters may have drifted meanwhile: they are rebuilt."""
    from django.db import connections

    db = connections[using or "default"]
    if db.vendor != "sqlite" or COUNTER not in db.introspection.table_names():
        return
    with db.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [MAILBOX])
        present = {row[0] for row in cursor.fetchall()}
        if set(SQLITE_TRIGGERS) <= present:
            return
        migration = importlib.import_module("migrations_app.migrations.0007_pages_counters")
        for statement in migration.SQLITE:  # CREATE ... IF NOT EXISTS
            cursor.execute(statement)
        for statement in migration.REBUILD:
            cursor.execute(statement)
    logger.warning(
        "mailbox counters: SQLite triggers %s were missing; recreated and counters rebuilt",
        sorted(set(SQLITE_TRIGGERS) - present),
    )
