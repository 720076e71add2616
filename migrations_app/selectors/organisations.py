"""Reads about organisations that pages and the API share. Scoping itself lives in selectors/scoping.py.

Counts come from one GROUP BY over the rows asked for, served by mailbox_org_state_idx: never a count of
the whole mailbox table, never one query per organisation.
"""

from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Upper

from migrations_app.models import Mailbox, Organisation


def organisations_filtered(
    organisations: QuerySet[Organisation], *, status: str = "", region: str = "", search: str = ""
) -> QuerySet[Organisation]:
    """Filter an already scoped queryset: by status, region, and an ODS code or name prefix."""
    if status:
        organisations = organisations.filter(status=status)
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
        Mailbox.objects.filter(organisation_id__in=ids)
        .order_by()
        .values("organisation_id")
        .annotate(n=Count("id"))
    )
    return {row["organisation_id"]: row["n"] for row in rows}


def mailbox_state_counts(organisation: Organisation) -> list[tuple[str, str, int]]:
    """(state, label, count) for every mailbox state, zeros included, from one GROUP BY on the organisation."""
    rows = (
        Mailbox.objects.filter(organisation=organisation).order_by().values("state").annotate(n=Count("id"))
    )
    counts = {row["state"]: row["n"] for row in rows}
    return [(value, label, counts.get(value, 0)) for value, label in Mailbox.State.choices]
