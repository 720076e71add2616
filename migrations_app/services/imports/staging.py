"""Staging an import's valid rows in a TEMP table: COPY FROM STDIN from a writer thread on PostgreSQL (the
server ingests while Python still validates), batched executemany on SQLite; and the advisory lock every
import that writes mailboxes holds for the rest of its transaction."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from dataclasses import dataclass

from django.db import connection

from migrations_app.models import Mailbox, Organisation
from migrations_app.services.imports import reader

logger = logging.getLogger(__name__)

STAGING_BATCH_ROWS = 5_000


# Taken by every import that writes mailboxes, for the rest of its transaction, so two imports cannot
# both pass the ownership check and then race each other in the upsert.
IMPORT_LOCK_KEY = 0x6D61696C626F78  # "mailbox"


@dataclass(frozen=True)
class StagingColumn:
    name: str
    sql_type: str  # "text", "bigint" or "integer"


class Staging:
    """A TEMP table, filled while the file is still being read: COPY on PostgreSQL, executemany elsewhere.

    Use as a context manager around the reading loop; write() takes batches of tuples in column order.
    """

    def __init__(self, table: str, columns: list[StagingColumn]):
        self.table = table
        self.columns = columns
        self.rows = 0
        self._stack = contextlib.ExitStack()
        self._copy = None
        self._cursor = None

    def __enter__(self) -> Staging:
        cursor = self._stack.enter_context(connection.cursor())
        self._cursor = cursor
        if connection.vendor == "postgresql":
            from psycopg.copy import QueuedLibpqWriter

            sql = self._prepare_copy(cursor)
            raw = cursor.cursor
            # The queued writer sends from a thread, so the server parses and stores the previous
            # megabyte while Python validates the next one.
            self._copy = self._stack.enter_context(raw.copy(sql, writer=QueuedLibpqWriter(raw)))
            self._buffer = io.StringIO()
            self._csv = csv.writer(self._buffer, lineterminator="\n")
        else:
            names = ", ".join(f"{c.name} {c.sql_type}" for c in self.columns)
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            cursor.execute(f"CREATE TEMP TABLE {self.table} ({names})")
            marks = ", ".join(["%s"] * len(self.columns))
            self._insert = f"INSERT INTO {self.table} VALUES ({marks})"
        return self

    def write(self, rows: list[tuple]) -> None:
        self.rows += len(rows)
        if self._copy is None:
            self._cursor.executemany(self._insert, rows)
            return
        self._csv.writerows(rows)
        if self._buffer.tell() >= reader.BLOCK_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._buffer.tell():
            self._copy.write(self._buffer.getvalue())
            self._buffer.seek(0)
            self._buffer.truncate()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._copy is not None:
            self._flush()
        self._stack.__exit__(exc_type, exc, tb)

    def drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")

    def _prepare_copy(self, cursor) -> str:
        """Create the table (PostgreSQL); the COPY statement that fills it."""
        names = ", ".join(f"{c.name} {c.sql_type}" for c in self.columns)
        cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
        # no indexes and no WAL: this table only lives for the import's transaction
        cursor.execute(f"CREATE TEMP TABLE {self.table} ({names}) ON COMMIT DROP")
        return copy_sql(self.table, self.columns)


def copy_sql(table: str, columns: list[StagingColumn]) -> str:
    names = ", ".join(c.name for c in columns)
    text = ", ".join(c.name for c in columns if c.sql_type == "text")
    return f"COPY {table} ({names}) FROM STDIN (FORMAT csv, FORCE_NOT_NULL ({text}))"


def lock_mailbox_imports() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [IMPORT_LOCK_KEY])


def distinct_sql(left: str, right: str) -> str:
    """A null-safe "differs" in this database's dialect."""
    if connection.vendor == "postgresql":
        return f"{left} IS DISTINCT FROM {right}"
    return f"{left} IS NOT {right}"


MAILBOX = Mailbox._meta.db_table


ORGANISATION = Organisation._meta.db_table
