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

import csv
import logging
import time
import typing
from collections.abc import Callable

from django.db import connection, transaction

from migrations_app.models import ImportJob, Organisation, User
from migrations_app.planning.units import PERMISSIONS_GROUP_PREFIX
from migrations_app.services.events import event_record
from migrations_app.services.imports.national import (
    _defer_mailbox_indexes,
    _direct_copy_start,
    _rebuild_mailbox_indexes,
)
from migrations_app.services.imports.reader import (
    EMAIL_RE,
    KINDS,
    KINDS_EXACT,
    ImportFileError,
    ImportResult,
    Progress,
    _Errors,
    _Lines,
    _Reader,
    _size_of,
    parse_count,
    read_header,
)
from migrations_app.services.imports.staging import (
    MAILBOX,
    STAGING_BATCH_ROWS,
    Staging,
    StagingColumn,
    copy_sql,
)
from migrations_app.services.imports.upsert import _upsert_staged

logger = logging.getLogger(__name__)


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


class MailboxCopy(Staging):
    """The staging rows COPYed straight into the mailbox table (PostgreSQL only), for an import that
    cannot collide with existing rows (_direct_copy_start). The line number is no mailbox column: the
    reader leaves it out of these rows; state, created_at and the other columns take their database
    defaults (created_at and updated_at: the import transaction's start)."""

    def __init__(self) -> None:
        super().__init__(MAILBOX, STAGING_COLUMNS[1:])

    def _prepare_copy(self, cursor) -> str:
        # Check the organisation foreign key as the COPY runs (at its end), rather than queueing millions
        # of deferred checks for COMMIT.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        return copy_sql(self.table, self.columns)

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
                    if direct:  # the mailbox table has no line column: no tuple sliced per row later
                        batch.append((org_id, email, display_name, kind, size, items, group, target))
                    else:
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
