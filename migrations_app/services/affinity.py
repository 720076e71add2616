"""Affinity groups from a permissions list: delegates and the mailboxes they use move together.

A permissions CSV (`mailbox, delegate, right`, as Get-MailboxPermission / Get-RecipientPermission export
it) is a graph of mailboxes; its connected components are the groups. Existing groups of the mailboxes
involved are merged in (all their members join the component), so a group is never split. Each component
of two or more mailboxes is named after its smallest address, so the same file always gives the same
names and re-importing it changes nothing.
"""

from __future__ import annotations

import hashlib
import typing

from django.conf import settings
from django.db import connection
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from migrations_app.models import ImportJob, Mailbox, Organisation, User
from migrations_app.planning.units import PERMISSIONS_GROUP_PREFIX
from migrations_app.services.events import event_record
from migrations_app.services.imports import (
    EMAIL_RE,
    MAILBOX,
    STAGING_BATCH_ROWS,
    ImportResult,
    Progress,
    Staging,
    StagingColumn,
    _Errors,
    _Lines,
    _Reader,
    lock_mailbox_imports,
    read_header,
    run_import,
)

PERMISSIONS_REQUIRED = ("mailbox", "delegate", "right")
PERMISSIONS_ALIASES = {
    "identity": "mailbox",
    "user": "delegate",
    "trustee": "delegate",
    "accessrights": "right",
    "access_rights": "right",
}
LARGEST_GROUPS = 20


def group_name(members: typing.Iterable[str]) -> str:
    """Deterministic: the same members always get the same name."""
    return (
        PERMISSIONS_GROUP_PREFIX + hashlib.sha1(min(members).encode(), usedforsecurity=False).hexdigest()[:12]
    )


class _DisjointSet:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        parent = self.parent
        root = parent.setdefault(item, item)
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:  # path compression
            parent[item], item = root, parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def components(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for item in self.parent:
            groups.setdefault(self.find(item), []).append(item)
        return groups


def affinity_largest_groups(
    *, organisations: QuerySet[Organisation] | None = None, limit: int = 20
) -> list[dict]:
    """The biggest affinity groups, biggest first: one GROUP BY over the partial index mailbox_affinity_idx."""
    mailboxes = Mailbox.objects.exclude(affinity_group="")
    if organisations is not None:
        mailboxes = mailboxes.filter(organisation__in=organisations)
    rows = (
        mailboxes.values("affinity_group")
        .annotate(
            mailboxes=Count("id"), bytes=Sum("size_bytes"), organisations=Count("organisation", distinct=True)
        )
        .order_by("-mailboxes", "affinity_group")[:limit]
    )
    return [
        {
            "group": row["affinity_group"],
            "mailboxes": row["mailboxes"],
            "bytes": row["bytes"] or 0,
            "organisations": row["organisations"],
        }
        for row in rows
    ]


def affinity_groups_over(*, mailboxes: int, organisations: QuerySet[Organisation] | None = None) -> int:
    """How many groups have more members than `mailboxes` (one wave's capacity): a planning problem."""
    qs = Mailbox.objects.exclude(affinity_group="")
    if organisations is not None:
        qs = qs.filter(organisation__in=organisations)
    return qs.values("affinity_group").annotate(n=Count("id")).filter(n__gt=mailboxes).count()


def permissions_import(
    *,
    source: typing.BinaryIO,
    organisation: Organisation | None,
    actor: User | None,
    import_valid_rows: bool = False,
    progress: Progress | None = None,
    total_bytes: int | None = None,
) -> ImportResult:
    """Set affinity groups from a permissions CSV. With `organisation`, every address must be one of its
    mailboxes. All or nothing unless `import_valid_rows`, like the inventory import."""
    return run_import(
        _permissions_import,
        rejected_action="affinity.rejected",
        source=source,
        organisation=organisation,
        actor=actor,
        import_valid_rows=import_valid_rows,
        progress=progress,
        total_bytes=total_bytes,
    )


def _permissions_import(
    *,
    source: typing.BinaryIO,
    organisation: Organisation | None,
    actor: User | None,
    import_valid_rows: bool,
    progress: Progress | None,
    total_bytes: int | None,
) -> ImportResult:
    errors = _Errors()
    lines = _Lines(source, progress, total_bytes)
    rows = iter(_Reader(lines, errors))
    columns = read_header(rows, lines, required=PERMISSIONS_REQUIRED, aliases=PERMISSIONS_ALIASES)
    width = len(columns)
    i_mailbox, i_delegate, i_right = columns["mailbox"], columns["delegate"], columns["right"]

    rows_total = invalid = 0
    edges: dict[int, tuple[str, str]] = {}
    staging = Staging(
        "permissions_staging",
        [
            StagingColumn("line", "integer"),
            StagingColumn("mailbox", "text"),
            StagingColumn("delegate", "text"),
        ],
    )
    batch: list[tuple] = []
    with staging:
        for line, row in rows:
            rows_total += 1
            if line in lines.bad_lines:
                errors.add(line, "", "", lines.why(line))
                invalid += 1
                continue
            if len(row) != width:
                errors.add(
                    line, "", ",".join(row), f"expected {width} fields as in the header, found {len(row)}"
                )
                invalid += 1
                continue
            before = errors.count
            mailbox = row[i_mailbox].strip().lower()
            delegate = row[i_delegate].strip().lower()
            for column, value in (("mailbox", mailbox), ("delegate", delegate)):
                if len(value) > 254 or EMAIL_RE.fullmatch(value) is None:
                    errors.add(line, column, row[columns[column]], "this is not a valid e-mail address")
            if not row[i_right].strip():
                errors.add(line, "right", "", "the right is empty")
            if errors.count != before:
                invalid += 1
                continue
            if mailbox == delegate:
                continue  # a mailbox's rights on itself say nothing about who moves with it
            edges[line] = (mailbox, delegate)
            batch.append((line, mailbox, delegate))
            if len(batch) >= STAGING_BATCH_ROWS:
                staging.write(batch)
                batch = []
        if batch:
            staging.write(batch)

    lock_mailbox_imports()
    outside, scope_params = _outside_condition(organisation)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.line, s.mailbox, s.delegate, a.id IS NULL OR {outside("a")}, d.id IS NULL OR {outside("d")}
            FROM permissions_staging s
            LEFT JOIN {MAILBOX} a ON a.email = s.mailbox
            LEFT JOIN {MAILBOX} d ON d.email = s.delegate
            WHERE a.id IS NULL OR d.id IS NULL OR {outside("a")} OR {outside("d")}
            ORDER BY s.line
            """,
            scope_params * 4,
        )
        where = f"{organisation.ods_code}'s inventory" if organisation else "the inventory"
        rejected_lines = []
        for line, mailbox, delegate, mailbox_missing, delegate_missing in cursor.fetchall():
            rejected_lines.append(line)
            invalid += 1
            if mailbox_missing:
                errors.add(line, "mailbox", mailbox, f"this address is not in {where}")
            if delegate_missing:
                errors.add(line, "delegate", delegate, f"this address is not in {where}")
        for line in rejected_lines:
            del edges[line]

        result = ImportResult(
            status=ImportJob.Status.REJECTED,
            rows_total=rows_total,
            rows_valid=rows_total - invalid,
            error_count=errors.count,
            errors=sorted(errors.items, key=lambda e: e.line),
        )
        if errors.count and not import_valid_rows:
            staging.drop()
            return result

        # Every member of an existing group that touches one of these mailboxes joins the component.
        cursor.execute(
            f"""
            SELECT m.email, m.affinity_group FROM {MAILBOX} m
            WHERE m.affinity_group <> '' AND m.affinity_group IN (
                SELECT x.affinity_group FROM {MAILBOX} x
                WHERE x.affinity_group <> '' AND (
                    x.email IN (SELECT mailbox FROM permissions_staging)
                    OR x.email IN (SELECT delegate FROM permissions_staging)
                )
            )
            """
        )
        existing = cursor.fetchall()
        staging.drop()

    components = _DisjointSet()
    for mailbox, delegate in edges.values():
        components.union(mailbox, delegate)
    first_of_group: dict[str, str] = {}
    current: dict[str, str] = {}
    for email, group in existing:
        current[email] = group
        components.union(first_of_group.setdefault(group, email), email)

    assignments = []
    for members in components.components().values():
        if len(members) < 2:
            continue
        name = group_name(members)
        assignments.extend((email, name) for email in members)

    updated = 0
    if assignments:
        groups = Staging("affinity_staging", [StagingColumn("email", "text"), StagingColumn("grp", "text")])
        with groups:
            for start in range(0, len(assignments), STAGING_BATCH_ROWS):
                groups.write(assignments[start : start + STAGING_BATCH_ROWS])
        with connection.cursor() as cursor:
            # one set-based UPDATE; a mailbox already in the right group is not rewritten
            cursor.execute(
                f"""
                UPDATE {MAILBOX} SET affinity_group = g.grp, updated_at = %s
                FROM affinity_staging g
                WHERE {MAILBOX}.email = g.email AND {MAILBOX}.affinity_group <> g.grp
                """,
                [timezone.now()],
            )
            updated = cursor.rowcount
        groups.drop()

    scope = Organisation.objects.filter(pk=organisation.pk) if organisation else None
    result.status = ImportJob.Status.SUCCEEDED
    result.updated, result.unchanged = updated, len(assignments) - updated
    result.summary = {
        "largest_groups": affinity_largest_groups(organisations=scope, limit=LARGEST_GROUPS),
        "groups_over_capacity": affinity_groups_over(
            mailboxes=settings.PROGRAMME_EVENING_WAVE_MAILBOXES, organisations=scope
        ),
        "wave_capacity": settings.PROGRAMME_EVENING_WAVE_MAILBOXES,
        "mailboxes_grouped": len(assignments),
    }
    event_record(
        action="affinity.imported",
        actor=actor,
        organisation=organisation,
        subject=organisation.ods_code if organisation else "national",
        data={
            "rows_total": result.rows_total,
            "rows_valid": result.rows_valid,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "error_count": result.error_count,
            "groups_over_capacity": result.summary["groups_over_capacity"],
        },
    )
    return result


def _outside_condition(organisation: Organisation | None) -> tuple[typing.Callable[[str], str], list]:
    """SQL saying a joined mailbox is outside the import's organisation (never true for a national file)."""
    if organisation is None:
        return (lambda alias: "false" if connection.vendor == "postgresql" else "0"), []
    return (lambda alias: f"{alias}.organisation_id <> %s"), [organisation.pk]


__all__ = ["affinity_groups_over", "affinity_largest_groups", "group_name", "permissions_import"]
