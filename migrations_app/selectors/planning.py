"""The planner's reads: aggregates of the plannable mailboxes, never rows (docs/adr/007-planner-allocations.md).

One GROUP BY over (organisation, affinity group) of the plannable mailboxes (ready and in no wave, served by
the partial index mailbox_plannable_idx), plus one ordered pass over the ungrouped mailboxes of the few large
organisations to cut them into chunks of id ranges.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.db.models import Window as SqlWindow
from django.db.models.functions import RowNumber

from migrations_app.models import (
    Allocation,
    BlackoutPeriod,
    ClosedPeriod,
    Decision,
    Mailbox,
    Organisation,
    Wave,
)
from migrations_app.planning.units import ChunkRow, GroupRow, OrgInfo
from migrations_app.selectors.waves import ALLOCATING_STATUSES, allocation_matches


def _plannable(exclude_waves: Sequence[int] = ()) -> tuple:
    """Ready mailboxes in no wave and not covered by an allocation of a draft or proposed wave we keep, of
    organisations that meet the required readiness gates."""
    qs = without_unmet_gates(Mailbox.objects.filter(state=Mailbox.State.READY, wave__isnull=True))
    live = Allocation.objects.filter(wave__status__in=ALLOCATING_STATUSES).exclude(wave_id__in=exclude_waves)
    if live.exists():  # the common full-programme case has none: keep that query a plain index scan
        qs = qs.exclude(
            Q(organisation_id__in=live.values("organisation_id"))
            & Exists(allocation_matches(live.filter(organisation_id=OuterRef("organisation_id"))))
        )
    return qs


def without_unmet_gates(qs):
    """Leave out the mailboxes of organisations missing a required readiness gate. Nothing is added to the
    query when every organisation meets them (the common case once a programme is under way)."""
    from migrations_app.selectors.readiness import organisations_gates_unmet

    unmet = organisations_gates_unmet()
    if not unmet.exists():
        return qs
    return qs.exclude(organisation_id__in=unmet.values("pk"))


def _group_rows(qs) -> list[GroupRow]:
    # One GROUP BY over the partial index mailbox_plannable_idx (organisation, affinity_group, id).
    rows = (
        qs.order_by()
        .values_list("organisation_id", "affinity_group")
        .annotate(n=Count("id"), b=Sum("size_bytes"))
    )
    return [GroupRow(o, g, n, b or 0) for o, g, n, b in rows]


def _chunk_rows(qs, large: set[int], chunk: int) -> list[ChunkRow]:
    """The ungrouped mailboxes of large organisations cut into id ranges of `chunk` mailboxes: an ordered
    pass over the same index for those organisations only."""
    if not large:
        return []
    inner = (
        qs.filter(organisation_id__in=sorted(large), affinity_group="")
        .order_by()
        .annotate(rn=SqlWindow(RowNumber(), partition_by=[F("organisation_id")], order_by=F("id").asc()))
        .values("organisation_id", "id", "size_bytes", "rn")
    )
    sql, params = inner.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.organisation_id, MIN(s.id), MAX(s.id), COUNT(*), SUM(s.size_bytes) "
            f"FROM ({sql}) s GROUP BY s.organisation_id, (s.rn - 1) / %s",
            (*params, chunk),
        )
        return [ChunkRow(o, lo, hi, n, int(b or 0)) for o, lo, hi, n, b in cursor.fetchall()]


def _org_infos(org_ids: Iterable[int], start: dt.date, end: dt.date) -> dict[int, OrgInfo]:
    ids = sorted(set(org_ids))
    blackouts: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
    # one query for the blackouts touching the horizon
    for org_id, s, e in BlackoutPeriod.objects.filter(ends_on__gte=start, starts_on__lte=end).values_list(
        "organisation_id", "starts_on", "ends_on"
    ):
        blackouts[org_id].append((s, e))
    orgs = Organisation.objects.values_list("id", "ods_code", "priority", "preferred_window")
    if len(ids) < 10_000:  # beyond that, reading every organisation is cheaper than a long IN list
        orgs = orgs.filter(pk__in=ids)
    infos = {}
    for org_id, code, priority, preference in orgs.iterator(chunk_size=5000):
        infos[org_id] = OrgInfo(org_id, code, priority, preference, tuple(sorted(blackouts.get(org_id, ()))))
    return infos


def closed_periods(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    return list(
        ClosedPeriod.objects.filter(ends_on__gte=start, starts_on__lte=end + dt.timedelta(days=4))
        .order_by("starts_on")
        .values_list("starts_on", "ends_on")
    )


def _replaceable_drafts():
    """Draft waves the planner may replace: never proposed (no decisions) and not pilots."""
    return Wave.objects.filter(status=Wave.Status.DRAFT, is_pilot=False).exclude(
        Exists(Decision.objects.filter(wave=OuterRef("pk")))
    )


def _used_capacity(exclude_waves: Sequence[int]) -> dict[tuple[str, str], tuple[int, int]]:
    """Capacity already taken in each window by waves the planner keeps (proposed, approved, pilots...)."""
    used: dict[tuple[str, str], tuple[int, int]] = {}
    kept = Wave.objects.exclude(status__in=[Wave.Status.CANCELLED, Wave.Status.COMPLETED]).exclude(
        pk__in=exclude_waves
    )
    for kind, starts_at, m, b in kept.values_list("kind", "starts_at", "planned_mailboxes", "planned_bytes"):
        key = (kind, starts_at.astimezone(dt.UTC).isoformat())
        um, ub = used.get(key, (0, 0))
        used[key] = (um + m, ub + b)
    return used
