"""The set-based upsert of staged inventory rows: report the addresses another organisation owns (without
revealing which, unless the importer may see it), update the rows that changed, insert the new ones."""

from __future__ import annotations

import logging
import time

from django.db import connection
from django.utils import timezone

from migrations_app.models import ImportJob, Mailbox, Organisation, User
from migrations_app.services.imports import reader
from migrations_app.services.imports.reader import (
    ImportResult,
    RowError,
    _Errors,
)
from migrations_app.services.imports.staging import (
    MAILBOX,
    ORGANISATION,
    Staging,
    distinct_sql,
    lock_mailbox_imports,
)

logger = logging.getLogger(__name__)


def reveals_owner(*, organisation: Organisation | None, actor: User | None) -> bool:
    """May the error say which organisation owns an address? Not to a trust admin."""
    return organisation is None or actor is None or actor.is_programme_office


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
                [reader.MAX_REPORTED_ERRORS],  # read at call time: one knob for both modules
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
            cursor.execute(_upsert_sql(with_target=with_target), [now])
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

    An UPDATE joined to the staging table touches only the rows that match, so an unchanged row is left as it
    is (no new row version, no index churn, no lock) and an address owned by another organisation (reported as
    an error before we get here) is never taken over. It was an INSERT ... ON CONFLICT DO UPDATE ... WHERE:
    PostgreSQL locks every conflicting row even when the WHERE leaves it alone, which wrote to the heap page
    of every mailbox of a re-imported national file (bench.import_inventory --mode reimport). A blank
    affinity_group or target_upn keeps what is there (a permissions import may have set the group).
    """
    sets = [
        "display_name = s.display_name",
        "kind = s.kind",
        "size_bytes = s.size_bytes",
        "item_count = s.item_count",
        "affinity_group = CASE WHEN s.affinity_group = '' THEN t.affinity_group ELSE s.affinity_group END",
        "updated_at = %s",
        # a changed row is checked again (services.readiness: the beat re-checks those with no check)
        "checked_at = NULL",
    ]
    changed = [
        distinct_sql("t.display_name", "s.display_name"),
        distinct_sql("t.kind", "s.kind"),
        distinct_sql("t.size_bytes", "s.size_bytes"),
        distinct_sql("t.item_count", "s.item_count"),
        f"(s.affinity_group <> '' AND {distinct_sql('t.affinity_group', 's.affinity_group')})",
    ]
    if with_target:
        sets.append("target_upn = CASE WHEN s.target_upn = '' THEN t.target_upn ELSE s.target_upn END")
        changed.append(f"(s.target_upn <> '' AND {distinct_sql('t.target_upn', 's.target_upn')})")
    return f"""
        UPDATE {MAILBOX} AS t SET {", ".join(sets)}
        FROM inventory_staging s
        WHERE t.email = s.email AND t.organisation_id = s.organisation_id AND ({" OR ".join(changed)})
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
