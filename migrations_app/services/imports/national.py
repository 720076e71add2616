"""The national initial load: straight into the mailbox table when nothing can collide, and, for a file big
enough, with the table's indexes and constraints dropped and built again afterwards (docs/adr/005)."""

from __future__ import annotations

import logging
import time
import typing

from django.db import connection

from migrations_app.models import Mailbox, MailboxCounter, Organisation
from migrations_app.services.counters import (
    counters_disable_insert_trigger,
    counters_enable_insert_trigger,
    counters_rebuild,
)
from migrations_app.services.imports.staging import (
    MAILBOX,
    lock_mailbox_imports,
)

logger = logging.getLogger(__name__)


def _direct_copy_start(*, source: typing.BinaryIO, organisation: Organisation | None) -> int | None:
    """Where the file starts, if its rows may be COPYed straight into the mailbox table; else None.

    PostgreSQL only, for an organisation with no mailboxes yet (a national file: an empty table), under the
    import lock so no other import can add any meanwhile, and for a file that can be read again should the
    COPY collide after all (an address of another organisation, or one the API inserted meanwhile).
    """
    if connection.vendor != "postgresql":
        return None
    try:
        if not source.seekable():
            return None
        start = source.tell()
    except (AttributeError, OSError, ValueError):
        return None
    mailboxes = (
        Mailbox.objects.all() if organisation is None else Mailbox.objects.filter(organisation=organisation)
    )
    if mailboxes.exists():  # checked before the lock too, so a re-import does not wait for other imports
        return None
    lock_mailbox_imports()
    if mailboxes.exists():
        return None
    return start


# A national file at least this big loading into an empty mailbox table builds the secondary indexes
# after the COPY instead of row by row (about 16 MB is 200,000 rows).
DEFER_INDEXES_MIN_BYTES = 16 * 1024 * 1024


def _defer_mailbox_indexes(*, organisation: Organisation | None, total_bytes: int | None) -> list[str]:
    """For the national initial load only: drop the mailbox table's unique and secondary indexes, returning
    the statements that build them again, exactly as the migrations defined them.

    PostgreSQL's own advice for loading a fresh table ("Populating a Database"): an index built once by
    sorting costs a fraction of the same index maintained row by row; at 2.1 million rows in file order the
    random inserts into the address indexes were most of the load's time. The table is empty (checked
    under the import lock), so the exclusive lock the DDL takes until COMMIT holds up no real reader; all of
    it is inside the import's savepoint, so a rejection or a crash leaves the indexes as they were. The
    unique constraint on the address and the foreign keys are dropped and added back too: adding them back
    checks every row once, in one set-based pass, instead of row by row during the COPY.
    """
    if organisation is not None or (total_bytes or 0) < DEFER_INDEXES_MIN_BYTES:
        return []
    rebuild: list[str] = []
    with connection.cursor() as cursor:
        # The portal's least-privileged role owns no table (README, "Database roles"): it loads with the
        # indexes in place. Run `import_mailboxes` as the migration role for the fast first load.
        cursor.execute(
            "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = %s::regclass", [MAILBOX]
        )
        if not cursor.fetchone()[0]:
            return []
        # Run the checks still deferred in this transaction now: PostgreSQL refuses to alter a table that has
        # pending trigger events (the organisations' own foreign keys, when they were created just before).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC",
            [MAILBOX],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary "
            "AND i.indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = %s::regclass)",
            [MAILBOX, MAILBOX],
        )
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f"DROP INDEX {name}")
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE {MAILBOX} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {MAILBOX} ADD CONSTRAINT "{name}" {definition}')
        # An index the model declares is built again from its declaration, as its migration built it: the
        # catalogue's text of a partial index's condition (state IN (...)) does not read back to the same text.
        declared = _declared_index_sql()
        rebuild.extend(declared.get(name, definition) for name, definition in indexes)
    # The counters too are built once afterwards (services.counters), not by the trigger over a transition
    # table of every COPYed row.
    counters_disable_insert_trigger()
    return rebuild


def _declared_index_sql() -> dict[str, str]:
    """CREATE INDEX statements of the mailbox model's declared indexes, by name, as a migration writes them."""
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        return {index.name: str(index.create_sql(Mailbox, editor)) for index in Mailbox._meta.indexes}


def _rebuild_mailbox_indexes(statements: list[str]) -> None:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are initially deferred
    counters_enable_insert_trigger()
    counters_rebuild()
    # Statistics for the planner now, not when autovacuum next looks: a table loaded from empty still has the
    # statistics of an empty table, and on such tables the notifications' scheduling pass took 87-434 s over
    # 83,000 mailboxes instead of 2 s (bench.notify; the plan it chose was not traced). A sample, about a
    # second at 2.1M rows.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {MAILBOX}")
        cursor.execute(f"ANALYZE {connection.ops.quote_name(MailboxCounter._meta.db_table)}")
    logger.info(
        "inventory import: %s mailbox indexes built in %.1f s", len(statements), time.perf_counter() - started
    )
