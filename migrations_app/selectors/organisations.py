"""Reads about organisations that pages and the API share. Scoping itself lives in selectors/scoping.py.

Counts come from the mailbox counters (models.MailboxCounter, kept by triggers): never a count of mailbox
rows, never one query per organisation.
"""

from collections.abc import Iterable

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Upper

from migrations_app.models import Mailbox, MailboxCounter, Organisation


def organisations_filtered(
    organisations: QuerySet[Organisation],
    *,
    status: str = "",
    region: str = "",
    search: str = "",
    stage: str = "",
) -> QuerySet[Organisation]:
    """Filter an already scoped queryset: by status, stage, region, and an ODS code or name prefix."""
    if status:
        organisations = organisations.filter(status=status)
    if stage:
        organisations = organisations.filter(stage=stage)
    if region:
        organisations = organisations.filter(region=region)
    search = search.strip()
    if search:
        # Prefix searches only: they can use the ods_code unique index and organisation_name_upper_idx.
        organisations = organisations.alias(name_upper=Upper("name")).filter(
            Q(ods_code__startswith=search.upper()) | Q(name_upper__startswith=search.upper())
        )
    return organisations.order_by("ods_code")


def mailbox_counts_by_organisation(organisation_ids: Iterable[int]) -> dict[int, int]:
    """Mailboxes per organisation, for just these organisations (a page of a list), in one query."""
    ids = list(organisation_ids)
    if not ids:
        return {}
    rows = (
        MailboxCounter.objects.filter(organisation_id__in=ids)
        .order_by()
        .values("organisation_id")
        .annotate(n=Sum("mailboxes"))
    )
    return {row["organisation_id"]: row["n"] or 0 for row in rows}


def organisation_mailbox_totals(organisation_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """{organisation id: (mailboxes, migrated)} for these organisations, in one query over the counters."""
    ids = list(organisation_ids)
    if not ids:
        return {}
    rows = (
        MailboxCounter.objects.filter(organisation_id__in=ids)
        .order_by()
        .values("organisation_id")
        .annotate(n=Sum("mailboxes"), migrated=Sum("mailboxes", filter=Q(state=Mailbox.State.MIGRATED)))
    )
    return {row["organisation_id"]: (row["n"] or 0, row["migrated"] or 0) for row in rows}
