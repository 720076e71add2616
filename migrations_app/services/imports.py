"""Inventory import: a CSV of mailboxes, validated in one streaming pass and upserted set-based.

Sized for a national file of 2.1 million rows (DESIGN.md, "Scale"):

- One pass in Python over the bytes. Each ~1 MB block is decoded at once; only a block that fails to decode
  is decoded line by line, so an undecodable line is reported with its number without paying per-line
  decoding on good files. csv.reader reads the decoded physical lines and its line_num gives line numbers.
- The valid rows go straight into a TEMP staging table: on PostgreSQL through COPY FROM STDIN in ~1 MB
  writes from a writer thread, so the server ingests while Python is still validating; on SQLite through
  batched executemany.
- Then SQL, set-based, under an advisory lock: one query counts the addresses that already exist (same
  organisation, or another one); if any do, one INSERT ... SELECT ... ON CONFLICT DO UPDATE updates them,
  with a guard so an unchanged row is not rewritten and a row owned by another organisation is never taken
  over; then one plain INSERT ... SELECT, sorted by address, adds the new ones.
- Direct COPY (PostgreSQL): when nothing can collide (the organisation has no mailboxes yet; for a national
  file, the table is empty; checked under the advisory lock), the validated rows are COPYed straight into
  the mailbox table instead, so index maintenance overlaps validation. A collision after all (another
  organisation's address, or one inserted meanwhile) rolls back to a savepoint and the file is read
  again through the staging path, which reports it. ImportResult.summary["path"] says which path ran.
- Everything is one transaction: a file with errors (unless the valid rows were asked for), or a crash
  half way, leaves nothing behind.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import itertools
import logging
import re
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from migrations_app.models import ImportJob, Mailbox, Organisation, User
from migrations_app.planning.units import PERMISSIONS_GROUP_PREFIX
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.services.counters import (
    counters_disable_insert_trigger,
    counters_enable_insert_trigger,
    counters_rebuild,
)
from migrations_app.services.events import event_record

logger = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 10_000
# How much of the file is decoded, and how much staging data is sent, at a time. Progress is reported
# once per block.
BLOCK_BYTES = 1 << 20
STAGING_BATCH_ROWS = 5_000
BIGINT_MAX = 2**63 - 1
# Taken by every import that writes mailboxes, for the rest of its transaction, so two imports cannot
# both pass the ownership check and then race each other in the upsert.
IMPORT_LOCK_KEY = 0x6D61696C626F78  # "mailbox"
PROGRESS_TIMEOUT = 24 * 3600

Progress = Callable[[int, int], None]


@dataclass
class RowError:
    line: int  # the physical line in the file; the header is line 1
    column: str
    value: str
    message: str


@dataclass
class ImportResult:
    status: str  # ImportJob.Status.SUCCEEDED or ImportJob.Status.REJECTED
    rows_total: int = 0
    rows_valid: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS, by line
    summary: dict = field(default_factory=dict)


class ImportFileError(Exception):
    """The whole file is unusable: no or wrong header, empty, not CSV text. The import functions turn it
    into a rejected result with one line-1 error, so callers only ever see an ImportResult."""

    def __init__(self, message: str, *, line: int = 1, column: str = "", value: str = ""):
        super().__init__(message)
        self.line, self.column, self.value = line, column, value

    def as_result(self) -> ImportResult:
        error = RowError(line=self.line, column=self.column, value=self.value, message=str(self))
        return ImportResult(status=ImportJob.Status.REJECTED, error_count=1, errors=[error])


# --- reading the file -------------------------------------------------------------------------------------

UNDECODABLE = (
    "this line is not UTF-8 text; in Excel use Save As 'CSV UTF-8 (Comma delimited) (*.csv)' and upload "
    "the file again"
)
HAS_NUL = (
    "this line has a NUL byte (a zero byte), which CSV text cannot hold; a file saved as UTF-16 ('Unicode "
    "text') has one in every character: in Excel use Save As 'CSV UTF-8 (Comma delimited) (*.csv)'"
)


class _Errors:
    """Every error is counted; the first MAX_REPORTED_ERRORS are kept."""

    def __init__(self) -> None:
        self.count = 0
        self.items: list[RowError] = []

    def add(self, line: int, column: str, value: str, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append(RowError(line=line, column=column, value=value[:200], message=message))

    def merged(self, more: Iterable[RowError], more_count: int) -> tuple[list[RowError], int]:
        items = sorted([*self.items, *more], key=lambda e: e.line)[:MAX_REPORTED_ERRORS]
        return items, self.count + more_count


class _Lines:
    """The decoded physical lines of a CSV upload, for csv.reader.

    Blocks of ~1 MB are cut at a line end and decoded whole; a block that fails (or holds a NUL, which
    PostgreSQL text cannot store and which means a UTF-16 file) is decoded line by line and its bad lines
    are remembered in `bad_lines`, decoded with replacement characters so the line count stays right.
    """

    def __init__(self, source: typing.BinaryIO, progress: Progress | None, total_bytes: int | None):
        self.source = source
        self.progress = progress
        self.total_bytes = total_bytes if total_bytes is not None else _size_of(source)
        self.bytes_read = 0
        self.bad_lines: set[int] = set()
        self.nul_lines: set[int] = set()  # of bad_lines, those with a NUL byte

    def why(self, line: int) -> str:
        """Why a line of bad_lines cannot be read."""
        return HAS_NUL if line in self.nul_lines else UNDECODABLE

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[Iterable[str]]:
        read = self.source.read
        leftover = b""
        lines_before = 0
        first = True
        while True:
            block = read(BLOCK_BYTES)
            if block:
                self.bytes_read += len(block)
                data = leftover + block
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    leftover = data
                    continue
                data, leftover = data[:cut], data[cut:]
            else:
                data, leftover = leftover, b""
                if not data:
                    break
            if first:
                first = False
                if data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8) :]
            yield self._decode(data, lines_before)
            lines_before += data.count(b"\n")
            if self.progress is not None:
                self.progress(self.bytes_read, max(self.total_bytes, self.bytes_read))
            if not block:
                break

    def _decode(self, data: bytes, lines_before: int) -> Iterable[str]:
        if b"\x00" not in data:
            try:
                return io.StringIO(data.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        lines = []
        for number, raw in enumerate(io.BytesIO(data), start=lines_before + 1):
            try:
                if b"\x00" in raw:
                    self.nul_lines.add(number)
                    raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self.bad_lines.add(number)
                lines.append(raw.decode("utf-8", "replace").replace("\x00", ""))
        return lines


def _size_of(source: typing.BinaryIO) -> int:
    size = getattr(source, "size", None)
    if isinstance(size, int):
        return size
    try:
        here = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return 0


class _Reader:
    """csv.reader over _Lines, yielding (first physical line, fields) and skipping blank lines."""

    def __init__(self, lines: _Lines, errors: _Errors):
        self.lines = lines
        self.errors = errors
        self.reader = csv.reader(lines)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        reader = self.reader
        end = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over csv's size limit: report it, read on
                self.errors.add(reader.line_num, "", "", f"this line could not be read as CSV: {exc}")
                end = reader.line_num
                continue
            line, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield line, row


def normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def read_header(
    rows: Iterator[tuple[int, list[str]]],
    lines: _Lines,
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    ignored: list[str] | None = None,
) -> dict[str, int]:
    """The header's known columns, {name: index}, or ImportFileError saying what is wrong with it. Columns the
    portal does not know (an export from Exchange has dozens, the portal's own export has its state columns)
    are appended to `ignored` and skipped rather than rejected, when a list is given."""
    aliases = aliases or {}
    expected = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
    try:
        line, header = next(rows)
    except StopIteration:
        raise ImportFileError(
            f"The file is empty. Expected a header line with the columns {expected}."
        ) from None
    if line in lines.bad_lines:
        if line in lines.nul_lines:
            raise ImportFileError(f"Line {line} (the header) {HAS_NUL}.", line=line)
        raise ImportFileError(f"Line {line} (the header) is not UTF-8 text: {UNDECODABLE.split('; ', 1)[1]}.")
    if line != 1:
        raise ImportFileError(f"The header must be on line 1 (found blank lines before it, on line {line}).")
    names = [aliases.get(normalise_header(h), normalise_header(h)) for h in header]
    known = set(required) | set(optional)
    unknown = [h.strip() or "(blank)" for h, n in zip(header, names, strict=True) if n not in known]
    missing = [c for c in required if c not in names]
    repeated = sorted({n for n in names if n in known and names.count(n) > 1})
    if ignored is not None and unknown:
        ignored.extend(unknown)
        unknown = []
    if not (unknown or missing or repeated):
        return {name: index for index, name in enumerate(names) if name in known}
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    if repeated:
        problems.append(f"repeated columns: {', '.join(repeated)}")
    message = f"The header (line 1) is not right: {'; '.join(problems)}. Expected the columns {expected}."
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        message += " The columns seem to be separated by ';' or tabs: save the file as CSV (comma delimited)."
    raise ImportFileError(message, value=",".join(header)[:200])


# --- the values in a row ----------------------------------------------------------------------------------

EMAIL_RE = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.ASCII,
)
KINDS = {
    "user": Mailbox.Kind.USER.value,
    "shared": Mailbox.Kind.SHARED.value,
    "room": Mailbox.Kind.ROOM.value,
    "equipment": Mailbox.Kind.EQUIPMENT.value,
    # Exchange's RecipientTypeDetails names, as Get-Mailbox exports them
    "usermailbox": Mailbox.Kind.USER.value,
    "sharedmailbox": Mailbox.Kind.SHARED.value,
    "roommailbox": Mailbox.Kind.ROOM.value,
    "equipmentmailbox": Mailbox.Kind.EQUIPMENT.value,
}
KINDS_EXACT = {**KINDS, "UserMailbox": "user", "SharedMailbox": "shared", "RoomMailbox": "room"}
KINDS_EXACT["EquipmentMailbox"] = "equipment"
# Exchange's TotalItemSize text: "1.2 GB (1,288,490,188 bytes)"
EXCHANGE_SIZE_RE = re.compile(r"\(\s*([\d,]+)\s*bytes\s*\)\s*$", re.IGNORECASE)
GROUPED_DIGITS_RE = re.compile(r"\d{1,3}(?:,\d{3})+")


def parse_count(text: str) -> tuple[int | None, str]:
    """A whole number from a cell: plain digits, digits grouped with commas, or Exchange's size text.
    Returns (number, "") or (None, why not)."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        number = int(value)
    elif GROUPED_DIGITS_RE.fullmatch(value):
        number = int(value.replace(",", ""))
    elif match := EXCHANGE_SIZE_RE.search(value):
        number = int(match.group(1).replace(",", ""))
    elif not value:
        return None, "is empty: give a whole number"
    elif value.startswith("-") and value[1:].strip().replace(",", "").isdigit():
        return None, "is negative"
    else:
        return None, "is not a whole number"
    if number > BIGINT_MAX:
        return None, "is too large"
    return number, ""


# --- staging ----------------------------------------------------------------------------------------------


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
        if self._buffer.tell() >= BLOCK_BYTES:
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


def reveals_owner(*, organisation: Organisation | None, actor: User | None) -> bool:
    """May the error say which organisation owns an address? Not to a trust admin."""
    return organisation is None or actor is None or actor.is_programme_office


# --- the inventory import ---------------------------------------------------------------------------------

INVENTORY_REQUIRED = ("email", "display_name", "kind", "size_bytes", "item_count")
INVENTORY_OPTIONAL = ("affinity_group", "target_upn")
# Column names as Exchange's Get-Mailbox / Get-MailboxStatistics exports spell them
INVENTORY_ALIASES = {
    "primarysmtpaddress": "email",
    "email_address": "email",
    "displayname": "display_name",
    "recipienttypedetails": "kind",
    "totalitemsize": "size_bytes",
    "itemcount": "item_count",
    "affinitygroup": "affinity_group",
    "targetupn": "target_upn",
    "odscode": "ods_code",
}
STAGING_COLUMNS = [
    StagingColumn("line", "integer"),
    StagingColumn("organisation_id", "bigint"),
    StagingColumn("email", "text"),
    StagingColumn("display_name", "text"),
    StagingColumn("kind", "text"),
    StagingColumn("size_bytes", "bigint"),
    StagingColumn("item_count", "bigint"),
    StagingColumn("affinity_group", "text"),
    StagingColumn("target_upn", "text"),
]
MAILBOX = Mailbox._meta.db_table
ORGANISATION = Organisation._meta.db_table


class MailboxCopy(Staging):
    """The staging rows COPYed straight into the mailbox table (PostgreSQL only), for an import that
    cannot collide with existing rows (_direct_copy_start). The line number is no mailbox column and is
    left out; state, created_at and the other columns take their database defaults (created_at and
    updated_at: the import transaction's start)."""

    def __init__(self) -> None:
        super().__init__(MAILBOX, STAGING_COLUMNS[1:])

    def _prepare_copy(self, cursor) -> str:
        # Check the organisation foreign key as the COPY runs (at its end), rather than queueing millions
        # of deferred checks for COMMIT.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        return copy_sql(self.table, self.columns)

    def write(self, rows: list[tuple]) -> None:
        super().write([row[1:] for row in rows])

    def __exit__(self, exc_type, exc, tb) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc_type is None:
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are initially deferred

    def drop(self) -> None:
        pass


def inventory_import(
    *,
    source: typing.BinaryIO,
    organisation: Organisation | None,
    actor: User | None,
    import_valid_rows: bool = False,
    progress: Progress | None = None,
    total_bytes: int | None = None,
) -> ImportResult:
    """Validate and upsert a mailbox inventory. `organisation=None` is a national file with an ods_code
    column. Permission checks are the caller's (import_job_create, the command is run by an operator).

    A file with any error imports nothing unless `import_valid_rows`; a file-level problem (header,
    empty, not text) is a rejected result with a line-1 error.
    """
    result = run_import(
        _inventory_import,
        rejected_action="inventory.rejected",
        source=source,
        organisation=organisation,
        actor=actor,
        import_valid_rows=import_valid_rows,
        progress=progress,
        total_bytes=total_bytes,
    )
    if result.status == ImportJob.Status.SUCCEEDED:
        from migrations_app.services.readiness.stages import organisations_stage_on_import

        organisations_stage_on_import(organisation=organisation, actor=actor)
    return result


def run_import(
    importer: Callable[..., ImportResult],
    *,
    rejected_action: str,
    organisation: Organisation | None,
    actor: User | None,
    **options,
) -> ImportResult:
    """Run an importer in one transaction; a file-level problem becomes a rejected result, and a rejected
    file is recorded as an Event (`rejected_action`) after the rollback."""
    try:
        with transaction.atomic():
            result = importer(organisation=organisation, actor=actor, **options)
    except ImportFileError as exc:
        result = exc.as_result()
    if result.status == ImportJob.Status.REJECTED:
        event_record(
            action=rejected_action,
            actor=actor,
            organisation=organisation,
            subject=organisation.ods_code if organisation else "national",
            message=result.errors[0].message if result.errors else "",
            data={"rows_total": result.rows_total, "error_count": result.error_count},
        )
    return result


def _inventory_import(
    *, source: typing.BinaryIO, organisation: Organisation | None, **options
) -> ImportResult:
    """Straight into the mailbox table when nothing can collide; through the staging table otherwise, or
    when something collides after all."""
    if connection.vendor == "postgresql":
        # An import is redone from its file; not waiting for the WAL flush at COMMIT risks (on a server
        # crash in the next few hundred ms) losing a committed import, never corrupting anything. The job
        # that records the import commits synchronously afterwards, which flushes this commit too.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
    start = _direct_copy_start(source=source, organisation=organisation)
    if start is not None:
        try:
            with transaction.atomic():  # a savepoint: a collision undoes the COPY, and only the COPY
                size = options["total_bytes"] if options["total_bytes"] is not None else _size_of(source)
                rebuild = _defer_mailbox_indexes(organisation=organisation, total_bytes=size)
                result = _import_rows(source=source, organisation=organisation, direct=True, **options)
                if rebuild and result.status == ImportJob.Status.SUCCEEDED:
                    _rebuild_mailbox_indexes(rebuild)  # a rejected file rolled back to the savepoint already
                return result
        except Exception as exc:
            if not _is_unique_violation(exc):
                raise
            # Another organisation's address, or one inserted by another writer meanwhile: the staging
            # path reads the file again and reports those rows.
            logger.info(
                "inventory import: the direct COPY hit an existing address; importing through staging"
            )
            source.seek(start)
    return _import_rows(source=source, organisation=organisation, direct=False, **options)


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
        rebuild.extend(definition for _name, definition in indexes)
    # The counters too are built once afterwards (services.counters), not by the trigger over a transition
    # table of every COPYed row.
    counters_disable_insert_trigger()
    return rebuild


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
    logger.info(
        "inventory import: %s mailbox indexes built in %.1f s", len(statements), time.perf_counter() - started
    )


def _is_unique_violation(exc: BaseException) -> bool:
    """psycopg's UniqueViolation from the raw COPY, or Django's IntegrityError wrapping one."""
    return any(getattr(e, "sqlstate", None) == "23505" for e in (exc, exc.__cause__))


def _import_rows(
    *,
    source: typing.BinaryIO,
    organisation: Organisation | None,
    actor: User | None,
    import_valid_rows: bool,
    progress: Progress | None,
    total_bytes: int | None,
    direct: bool,
) -> ImportResult:
    started = time.perf_counter()
    errors = _Errors()
    lines = _Lines(source, progress, total_bytes)
    rows = _Reader(lines, errors)
    national = organisation is None
    optional = INVENTORY_OPTIONAL + (() if national else ("ods_code",))
    required = INVENTORY_REQUIRED + (("ods_code",) if national else ())
    ignored: list[str] = []
    columns = read_header(
        iter(rows), lines, required=required, optional=optional, aliases=INVENTORY_ALIASES, ignored=ignored
    )

    width = len(columns) + len(ignored)
    i_email, i_name, i_kind = columns["email"], columns["display_name"], columns["kind"]
    i_size, i_items, i_group = columns["size_bytes"], columns["item_count"], columns.get("affinity_group")
    i_target = columns.get("target_upn")
    i_ods = columns.get("ods_code")
    if national:
        # ids as text, as the staging writer wants them
        org_ids = {code: str(pk) for code, pk in Organisation.objects.values_list("ods_code", "id")}
        own_code, own_id = "", None
    else:
        org_ids, own_code, own_id = {}, organisation.ods_code, str(organisation.id)

    # This loop runs once per row of a 2.1M-row file: keep it to local names and C calls, no per-row
    # function of our own on the happy path.
    add = errors.add
    bad_lines = lines.bad_lines
    email_ok = EMAIL_RE.fullmatch
    kinds_exact, kinds = KINDS_EXACT, KINDS
    seen: dict[str, int] = {}
    first_line = seen.setdefault
    batch: list[tuple] = []
    rows_total = invalid = 0
    staging = MailboxCopy() if direct else Staging("inventory_staging", STAGING_COLUMNS)
    reader = rows.reader
    end = reader.line_num
    with staging:
        while True:
            try:
                for row in reader:
                    line, end = end + 1, reader.line_num
                    if len(row) != width:
                        if not row or (len(row) == 1 and not row[0].strip()):
                            continue  # a blank line
                        rows_total += 1
                        invalid += 1
                        if bad_lines and line in bad_lines:
                            add(line, "", "", lines.why(line))
                        else:
                            message = f"expected {width} fields as in the header, found {len(row)}"
                            add(line, "", ",".join(row), message)
                        continue
                    rows_total += 1
                    if bad_lines and line in bad_lines:
                        add(line, "", "", lines.why(line))
                        invalid += 1
                        continue
                    before = errors.count

                    email = row[i_email].strip().lower()
                    if not email:
                        add(line, "email", "", "the address is empty")
                    elif len(email) > 254 or email_ok(email) is None:
                        add(line, "email", row[i_email], "this is not a valid e-mail address")
                    else:
                        first = first_line(email, line)
                        if first != line:
                            add(line, "email", email, f"duplicate address: it first appeared on line {first}")

                    display_name = row[i_name].strip()
                    if len(display_name) > 256:
                        add(
                            line,
                            "display_name",
                            display_name,
                            "the display name is longer than 256 characters",
                        )

                    kind = kinds_exact.get(row[i_kind]) or kinds.get(row[i_kind].strip().lower())
                    if kind is None:
                        add(
                            line,
                            "kind",
                            row[i_kind],
                            "unknown kind: use user, shared, room or equipment "
                            "(or UserMailbox, SharedMailbox, RoomMailbox, EquipmentMailbox)",
                        )

                    text = row[i_size]
                    if text.isdigit() and text.isascii() and len(text) < 19:
                        size = text  # staged as written: no int() and back to text for COPY
                    else:
                        size, why = parse_count(text)
                        if size is None:
                            add(line, "size_bytes", text, f"the size {why} (bytes)")

                    text = row[i_items]
                    if text.isdigit() and text.isascii() and len(text) < 19:
                        items = text
                    else:
                        items, why = parse_count(text)
                        if items is None:
                            add(line, "item_count", text, f"the item count {why}")

                    group = row[i_group].strip() if i_group is not None else ""
                    if len(group) > 100:
                        add(line, "affinity_group", group, "the affinity group is longer than 100 characters")
                    elif group.startswith(PERMISSIONS_GROUP_PREFIX):
                        add(
                            line,
                            "affinity_group",
                            group,
                            f"names starting {PERMISSIONS_GROUP_PREFIX} come from a permissions import: choose another",
                        )

                    target = ""
                    if i_target is not None:
                        target = row[i_target].strip().lower()
                        if target and (len(target) > 254 or email_ok(target) is None):
                            add(line, "target_upn", row[i_target], "the target UPN is not a valid address")

                    if national:
                        code = row[i_ods].strip().upper()
                        org_id = org_ids.get(code)
                        if org_id is None:
                            add(
                                line,
                                "ods_code",
                                row[i_ods],
                                "unknown ODS code" if code else "the ODS code is empty",
                            )
                    else:
                        org_id = own_id
                        if i_ods is not None:
                            code = row[i_ods].strip().upper()
                            if code and code != own_code:
                                add(line, "ods_code", row[i_ods], f"this row is not for {own_code}")

                    if errors.count != before:
                        invalid += 1
                        continue
                    batch.append((line, org_id, email, display_name, kind, size, items, group, target))
                    if len(batch) >= STAGING_BATCH_ROWS:
                        staging.write(batch)
                        batch = []
                break
            except csv.Error as exc:  # e.g. a field over csv's size limit: report it and read on
                rows_total += 1
                invalid += 1
                add(reader.line_num, "", "", f"this line could not be read as CSV: {exc}")
                end = reader.line_num
        if batch:
            staging.write(batch)
    if progress is not None:
        progress(lines.bytes_read, max(lines.total_bytes, lines.bytes_read))

    staged_at = time.perf_counter()
    if direct:
        error_list, error_count = errors.merged([], 0)
        result = ImportResult(
            status=ImportJob.Status.REJECTED,
            rows_total=rows_total,
            rows_valid=staging.rows,
            error_count=error_count,
            errors=error_list,
            summary={"path": "direct-copy"},
        )
        if error_count and not import_valid_rows:
            transaction.set_rollback(True)  # back to the savepoint before the COPY: nothing is written
            return result
        result.status, result.created = ImportJob.Status.SUCCEEDED, staging.rows
        logger.info(
            "inventory import: %s rows read, validated and copied into the mailbox table in %.1f s",
            rows_total,
            staged_at - started,
        )
    else:
        result = _upsert_staged(
            staging=staging,
            errors=errors,
            rows_total=rows_total,
            organisation=organisation,
            actor=actor,
            import_valid_rows=import_valid_rows,
            with_target=i_target is not None,
            started=started,
        )
    if ignored:
        result.summary["ignored_columns"] = ignored  # a warning on every channel, not a reason to reject
    if result.status == ImportJob.Status.REJECTED:
        return result

    event_record(
        action="inventory.imported",
        actor=actor,
        organisation=organisation,
        subject=organisation.ods_code if organisation else "national",
        data={
            "rows_total": result.rows_total,
            "rows_valid": result.rows_valid,
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "error_count": result.error_count,
            "import_valid_rows": import_valid_rows,
        },
    )
    return result


def _upsert_staged(
    *,
    staging: Staging,
    errors: _Errors,
    rows_total: int,
    organisation: Organisation | None,
    actor: User | None,
    import_valid_rows: bool,
    with_target: bool,
    started: float,
) -> ImportResult:
    """Report the staged addresses another organisation owns, then update the existing rows and insert the
    new ones, under the import lock. Rejected (and nothing written) if there are errors and only a clean
    file may be imported."""
    staged_at = time.perf_counter()
    lock_mailbox_imports()
    with connection.cursor() as cursor:
        # One pass over the staged rows: how many addresses exist already, in this organisation or another.
        cursor.execute(
            f"""
            SELECT count(*) FILTER (WHERE m.organisation_id = s.organisation_id),
                   count(*) FILTER (WHERE m.organisation_id <> s.organisation_id)
            FROM inventory_staging s JOIN {MAILBOX} m ON m.email = s.email
            """
        )
        existing, taken = cursor.fetchone()
        taken_errors: list[RowError] = []
        if taken:
            reveal = reveals_owner(organisation=organisation, actor=actor)
            cursor.execute(
                f"""
                SELECT s.line, s.email, o.ods_code
                FROM inventory_staging s
                JOIN {MAILBOX} m ON m.email = s.email AND m.organisation_id <> s.organisation_id
                JOIN {ORGANISATION} o ON o.id = m.organisation_id
                ORDER BY s.line LIMIT %s
                """,
                [MAX_REPORTED_ERRORS],
            )
            for line, email, owner in cursor.fetchall():
                owner_text = f"organisation {owner}" if reveal else "another organisation"
                message = f"this address already belongs to {owner_text}'s inventory"
                taken_errors.append(RowError(line=line, column="email", value=email, message=message))
        error_list, error_count = errors.merged(taken_errors, taken)
        rows_valid = staging.rows - taken
        result = ImportResult(
            status=ImportJob.Status.REJECTED,
            rows_total=rows_total,
            rows_valid=rows_valid,
            error_count=error_count,
            errors=error_list,
            summary={"path": "staging"},
        )
        if error_count and not import_valid_rows:
            staging.drop()
            return result

        checked_at = time.perf_counter()
        postgres = connection.vendor == "postgresql"
        if postgres:
            # A sort of up to 2.1M staged rows for the ordered insert: keep it in memory. Check the
            # organisation foreign key row by row as the statement runs, rather than queueing millions
            # of deferred checks for COMMIT.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        now = timezone.now()
        updated = created = 0
        if existing:
            cursor.execute(_upsert_sql(with_target=with_target), [now, now])
            updated = cursor.rowcount
        cursor.execute(_insert_new_sql(any_existing=bool(existing or taken)), [now, now])
        created = cursor.rowcount
        if postgres:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are initially deferred
        staging.drop()
    logger.info(
        "inventory import: %s rows read and staged in %.1f s, checked in %.1f s, upserted in %.1f s",
        rows_total,
        staged_at - started,
        checked_at - staged_at,
        time.perf_counter() - checked_at,
    )
    result.status = ImportJob.Status.SUCCEEDED
    result.created, result.updated, result.unchanged = created, updated, existing - updated
    return result


_INSERT_COLUMNS = """
    organisation_id, email, display_name, kind, size_bytes, item_count, affinity_group, target_upn,
    source_identity, state, attempts, last_error_code, last_error_message, bytes_copied, items_copied,
    created_at, updated_at
"""
_SELECT_STAGED = f"""
    s.organisation_id, s.email, s.display_name, s.kind, s.size_bytes, s.item_count, s.affinity_group,
    s.target_upn, '', '{Mailbox.State.INVENTORIED.value}', 0, '', '', 0, 0, %s, %s
"""


def _upsert_sql(*, with_target: bool) -> str:
    """Update the staged addresses that exist already: changed ones of the same organisation only.

    The WHERE makes an unchanged row a no-op (no new row version, no index churn) and refuses to take over
    an address owned by another organisation (reported as an error before we get here). A blank
    affinity_group or target_upn keeps what is there (a permissions import may have set the group).
    """
    t = MAILBOX
    sets = [
        "display_name = excluded.display_name",
        "kind = excluded.kind",
        "size_bytes = excluded.size_bytes",
        "item_count = excluded.item_count",
        f"affinity_group = CASE WHEN excluded.affinity_group = '' THEN {t}.affinity_group "
        "ELSE excluded.affinity_group END",
        "updated_at = excluded.updated_at",
        # a changed row is checked again (services.readiness: the beat re-checks those with no check)
        "checked_at = NULL",
    ]
    changed = [
        distinct_sql(f"{t}.display_name", "excluded.display_name"),
        distinct_sql(f"{t}.kind", "excluded.kind"),
        distinct_sql(f"{t}.size_bytes", "excluded.size_bytes"),
        distinct_sql(f"{t}.item_count", "excluded.item_count"),
        f"(excluded.affinity_group <> '' AND {distinct_sql(f'{t}.affinity_group', 'excluded.affinity_group')})",
    ]
    if with_target:
        sets.append(
            f"target_upn = CASE WHEN excluded.target_upn = '' THEN {t}.target_upn ELSE excluded.target_upn END"
        )
        changed.append(
            f"(excluded.target_upn <> '' AND {distinct_sql(f'{t}.target_upn', 'excluded.target_upn')})"
        )
    return f"""
        INSERT INTO {t} ({_INSERT_COLUMNS})
        SELECT {_SELECT_STAGED}
        FROM inventory_staging s
        WHERE EXISTS (SELECT 1 FROM {t} m WHERE m.email = s.email)
        ORDER BY s.email
        ON CONFLICT (email) DO UPDATE SET {", ".join(sets)}
        WHERE {t}.organisation_id = excluded.organisation_id AND ({" OR ".join(changed)})
    """


def _insert_new_sql(*, any_existing: bool) -> str:
    """Insert the staged addresses that do not exist yet, sorted so the unique index on email is filled
    left to right.

    A plain INSERT rather than ON CONFLICT: measured on 2.1M rows, ON CONFLICT's speculative insertion
    cost ~40% more than a plain insert (docs/adr/005). It is safe because every import holds
    IMPORT_LOCK_KEY from the ownership check to commit; an address inserted meanwhile by something else
    (the API) makes this statement fail and the whole import roll back, never half-write.
    """
    new_only = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {MAILBOX} m WHERE m.email = s.email)"
        if any_existing
        else "WHERE true"
    )
    return f"""
        INSERT INTO {MAILBOX} ({_INSERT_COLUMNS})
        SELECT {_SELECT_STAGED}
        FROM inventory_staging s
        {new_only}
        ORDER BY s.email
    """


# --- import jobs ------------------------------------------------------------------------------------------


def _progress_key(job_id: int) -> str:
    return f"portal:import-progress:{job_id}"


def _require_may_import(*, actor: User, organisation: Organisation | None) -> None:
    if organisation is None:
        require_programme_office(actor)  # a national file names every organisation
    else:
        require_administer(actor, organisation)


def _queue_or_run(job: ImportJob, *, inline: bool | None = None) -> ImportJob:
    if inline is None:
        inline = job.size_bytes <= settings.INVENTORY_INLINE_MAX_BYTES
    if inline:
        return import_job_run(job_id=job.id)
    from migrations_app.tasks import run_import_job

    # Queued on commit: the worker must find the job and its file. (Sent inside the transaction, a fast
    # worker would look for a job that does not exist yet.)
    transaction.on_commit(lambda: run_import_job.delay(job.id))
    return job


def import_job_create(
    *,
    actor: User,
    organisation: Organisation | None,
    kind: str,
    uploaded_file,
    import_valid_rows: bool,
    inline: bool | None = None,
) -> ImportJob:
    """Save an upload as a job, then import it now (small) or hand it to a worker (large). `inline` forces
    one or the other (the API decides by row count)."""
    _require_may_import(actor=actor, organisation=organisation)
    if kind not in ImportJob.Kind.values:
        raise ValidationError(f"Unknown import kind {kind!r}")
    size = getattr(uploaded_file, "size", None) or 0
    if size > settings.INVENTORY_UPLOAD_MAX_BYTES:
        limit = settings.INVENTORY_UPLOAD_MAX_BYTES // (1024 * 1024)
        raise ValidationError(f"The file is larger than {limit} MB")
    name = (getattr(uploaded_file, "name", "") or "upload.csv").rsplit("/", 1)[-1][:255]
    job = ImportJob(
        kind=kind,
        organisation=organisation,
        created_by=actor,
        filename=name,
        size_bytes=size,
        import_valid_rows=import_valid_rows,
        status=ImportJob.Status.QUEUED,
    )
    job.file.save(name, uploaded_file, save=False)
    job.save()
    cache.set(_progress_key(job.id), {"phase": "queued", "done": 0, "total": size}, PROGRESS_TIMEOUT)
    job = _queue_or_run(job, inline=inline)
    job.refresh_from_db()
    return job


def import_job_retry_valid_rows(*, job: ImportJob, actor: User) -> ImportJob:
    """Import the valid rows of a rejected job's file, as a new job (the rejected one stays as it was)."""
    _require_may_import(actor=actor, organisation=job.organisation)
    if job.status != ImportJob.Status.REJECTED:
        raise ValidationError("Only a rejected import can be retried with its valid rows")
    retry = ImportJob.objects.create(
        kind=job.kind,
        organisation=job.organisation,
        created_by=actor,
        file=job.file.name,
        filename=job.filename,
        size_bytes=job.size_bytes,
        import_valid_rows=True,
        status=ImportJob.Status.QUEUED,
    )
    cache.set(
        _progress_key(retry.id), {"phase": "queued", "done": 0, "total": retry.size_bytes}, PROGRESS_TIMEOUT
    )
    retry = _queue_or_run(retry)
    retry.refresh_from_db()
    return retry


def import_job_stalled(job: ImportJob, *, now: dt.datetime | None = None) -> bool:
    """A running job whose progress has not moved for IMPORT_STALL_SECONDS lost its worker. The progress is
    in the shared cache (the import's own transaction hides its database writes until it commits); a job
    that never reported counts from when it started."""
    now = now or timezone.now()
    entry = cache.get(_progress_key(job.id)) or {}
    last = dt.datetime.fromtimestamp(entry["at"], tz=dt.UTC) if entry.get("at") else job.started_at
    return last is None or (now - last).total_seconds() > settings.IMPORT_STALL_SECONDS


def import_job_fail_stalled(*, job: ImportJob) -> bool:
    """A job that lost its worker IMPORT_MAX_ATTEMPTS times is failed, with a reason the page shows."""
    failed = ImportJob.objects.filter(pk=job.pk, status=job.status, attempts=job.attempts).update(
        status=ImportJob.Status.FAILED,
        finished_at=timezone.now(),
        failure=(
            f"The import stopped {job.attempts} times without finishing: the worker running it was lost "
            "(restarted, or out of memory). Nothing was imported. Upload the file again; if it keeps "
            "happening, tell the programme office."
        ),
    )
    if failed:
        cache.set(
            _progress_key(job.id),
            {"phase": "failed", "done": 0, "total": job.size_bytes, "at": 0},
            PROGRESS_TIMEOUT,
        )
    return bool(failed)


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued job. Idempotent: a finished job, or one another worker is running (its progress still
    moves), is left alone. A running job whose progress stopped lost its worker (a redelivered task after
    a kill): it is taken over, up to IMPORT_MAX_ATTEMPTS runs, then failed (services/sweeps.py does the same
    for a job whose task is lost altogether)."""
    now = timezone.now()
    job = ImportJob.objects.select_related("organisation", "created_by").get(pk=job_id)
    if job.status == ImportJob.Status.RUNNING:
        if not import_job_stalled(job, now=now):
            return job
        if job.attempts >= settings.IMPORT_MAX_ATTEMPTS:
            import_job_fail_stalled(job=job)
            job.refresh_from_db()
            return job
    elif job.status != ImportJob.Status.QUEUED:
        return job
    # the same row as read above, or another worker took it first
    claimed = ImportJob.objects.filter(
        pk=job_id, status=job.status, attempts=job.attempts, started_at=job.started_at
    ).update(status=ImportJob.Status.RUNNING, started_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return ImportJob.objects.get(pk=job_id)
    job.refresh_from_db()

    key = _progress_key(job.id)

    def progress(done: int, total: int) -> None:
        phase = "saving" if total and done >= total else "reading"
        cache.set(key, {"phase": phase, "done": done, "total": total, "at": time.time()}, PROGRESS_TIMEOUT)

    progress(0, job.size_bytes)
    try:
        if job.kind == ImportJob.Kind.PERMISSIONS:
            from migrations_app.services.affinity import permissions_import as run
        else:
            run = inventory_import
        with job.file.open("rb") as source:
            result = run(
                source=source,
                organisation=job.organisation,
                actor=job.created_by,
                import_valid_rows=job.import_valid_rows,
                progress=progress,
                total_bytes=job.size_bytes or None,
            )
    except Exception as exc:
        # The import's own transaction has rolled back: nothing of it is in the database.
        logger.exception("import job %s failed", job.id)
        job.status = ImportJob.Status.FAILED
        job.failure = (
            f"The import stopped on an unexpected error ({type(exc).__name__}: {exc}). Nothing was imported."
        )
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "failure", "finished_at"])
        cache.set(key, {"phase": "failed", "done": 0, "total": job.size_bytes}, PROGRESS_TIMEOUT)
        return job

    job.status = result.status
    job.rows_total, job.rows_valid = result.rows_total, result.rows_valid
    job.rows_created, job.rows_updated, job.rows_unchanged = result.created, result.updated, result.unchanged
    job.error_count = result.error_count
    job.errors = [asdict(e) for e in result.errors]
    job.summary = result.summary
    job.finished_at = timezone.now()
    job.save()
    cache.set(key, {"phase": "finished", "done": job.size_bytes, "total": job.size_bytes}, PROGRESS_TIMEOUT)
    return job


def import_progress(job: ImportJob) -> dict:
    """{"phase", "done", "total", "percent"} for a progress bar. The running import writes it to the shared
    cache, because the worker's database transaction is not visible until it commits."""
    if job.is_finished:
        phase = "failed" if job.status == ImportJob.Status.FAILED else "finished"
        return {"phase": phase, "done": job.size_bytes, "total": job.size_bytes, "percent": 100}
    state = cache.get(_progress_key(job.id)) or {"phase": job.status, "done": 0, "total": job.size_bytes}
    done, total = int(state.get("done", 0)), int(state.get("total", 0))
    percent = min(100, done * 100 // total) if total else 0
    if state.get("phase") == "saving":
        percent = min(percent, 99)  # the rows are still being written
    return {"phase": state.get("phase", "queued"), "done": done, "total": total, "percent": percent}


__all__ = [
    "MAX_REPORTED_ERRORS",
    "ImportFileError",
    "ImportResult",
    "RowError",
    "import_job_create",
    "import_job_retry_valid_rows",
    "import_job_run",
    "import_progress",
    "inventory_import",
]
