"""Wave reads that pages and the API share. Wave membership is read here and nowhere else.

A mailbox belongs to a wave when
- its row says so (mailbox.wave): stamped by approval, pinned by a move, or picked for a pilot; or
- the wave is still draft or proposed, the mailbox is ready and in no wave, and one of the wave's allocations
  covers it: its whole organisation, its affinity group in its organisation, or an id range (chunk) of its
  organisation's ungrouped mailboxes.
Once a wave is approved its allocations have been stamped on the rows, so only the first rule applies.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum

from migrations_app.models import Allocation, Decision, Mailbox, MailboxCounter, Organisation, User, Wave
from migrations_app.planning.calendar import allowed_kinds
from migrations_app.selectors.scoping import organisations_visible_to

ALLOCATING_STATUSES = (Wave.Status.DRAFT, Wave.Status.PROPOSED)
EVENING, WEEKEND = Wave.Kind.EVENING.value, Wave.Kind.WEEKEND.value
LONDON = ZoneInfo("Europe/London")


def organisation_allowed_kinds(preference: str) -> frozenset[str]:
    return allowed_kinds(preference)


def allocation_matches(allocations: QuerySet[Allocation]) -> QuerySet[Allocation]:
    """Narrow allocations (already filtered to the outer mailbox's organisation) to those covering the outer
    mailbox. Chunk allocations carry affinity_group '' so they only cover ungrouped mailboxes."""
    return allocations.filter(
        Q(kind=Allocation.Kind.ORGANISATION)
        | Q(kind=Allocation.Kind.GROUP, affinity_group=OuterRef("affinity_group"))
        | Q(
            kind=Allocation.Kind.CHUNK,
            affinity_group=OuterRef("affinity_group"),
            first_mailbox_id__lte=OuterRef("pk"),
            last_mailbox_id__gte=OuterRef("pk"),
        )
    )


def wave_allocated_organisation_ids(wave: Wave) -> list[int]:
    return sorted(set(Allocation.objects.filter(wave=wave).values_list("organisation_id", flat=True)))


def wave_allocated_condition(wave: Wave) -> Q | None:
    """The condition for mailboxes that the wave's allocations cover and no row stamp has claimed yet."""
    if wave.status not in ALLOCATING_STATUSES:
        return None
    org_ids = wave_allocated_organisation_ids(wave)
    if not org_ids:
        return None
    covered = allocation_matches(
        Allocation.objects.filter(wave=wave, organisation_id=OuterRef("organisation_id"))
    )
    # An explicit id list (a wave holds at most a few hundred organisations) lets PostgreSQL use the
    # (organisation, state, id) index instead of scanning 2.1 million rows.
    return Q(state=Mailbox.State.READY, wave__isnull=True, organisation_id__in=org_ids) & Q(Exists(covered))


def wave_members(wave: Wave) -> QuerySet[Mailbox]:
    """Every mailbox in the wave, by either rule above."""
    condition = Q(wave=wave)
    allocated = wave_allocated_condition(wave)
    if allocated is not None:
        condition |= allocated
    return Mailbox.objects.filter(condition)


def wave_totals(wave: Wave) -> dict[str, int]:
    if wave.status not in ALLOCATING_STATUSES:
        totals = MailboxCounter.objects.filter(wave_id=wave.pk).aggregate(
            mailboxes=Sum("mailboxes"), bytes=Sum("bytes")
        )
        return {"mailboxes": totals["mailboxes"] or 0, "bytes": totals["bytes"] or 0}
    totals = wave_members(wave).aggregate(mailboxes=Count("id"), bytes=Sum("size_bytes"))
    return {"mailboxes": totals["mailboxes"] or 0, "bytes": totals["bytes"] or 0}


def wave_organisation_totals(wave: Wave) -> dict[int, tuple[int, int]]:
    """{organisation id: (mailboxes, bytes)} for the wave: one GROUP BY over its members (at most a window's
    worth of rows), plus organisations allocated with no plannable mailbox left (shown with zero). Once the
    wave is stamped (approved and after), membership is mailbox.wave alone and the mailbox counters have it
    per organisation: no mailbox row is read."""
    if wave.status not in ALLOCATING_STATUSES:
        stamped = (
            MailboxCounter.objects.filter(wave_id=wave.pk)
            .exclude(mailboxes=0)
            .order_by()
            .values_list("organisation_id")
            .annotate(n=Sum("mailboxes"), b=Sum("bytes"))
        )
        return {org_id: (n, b or 0) for org_id, n, b in stamped if n}
    rows = (
        wave_members(wave)
        .order_by()
        .values_list("organisation_id")
        .annotate(n=Count("id"), b=Sum("size_bytes"))
    )
    totals = {org_id: (n, b or 0) for org_id, n, b in rows}
    if wave.status in ALLOCATING_STATUSES:
        for org_id in wave_allocated_organisation_ids(wave):
            totals.setdefault(org_id, (0, 0))
    return totals


def wave_organisation_ids(wave: Wave) -> set[int]:
    return set(wave_organisation_totals(wave))


def wave_responses(wave: Wave) -> dict[int, Decision]:
    """Each organisation's latest go / no-go on the wave since it was last proposed."""
    last_propose = (
        Decision.objects.filter(wave=wave, kind=Decision.Kind.PROPOSE)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    if last_propose is None:
        return {}
    responses: dict[int, Decision] = {}
    for decision in (
        Decision.objects.filter(
            wave=wave, kind__in=[Decision.Kind.GO, Decision.Kind.NO_GO], id__gt=last_propose
        )
        .select_related("actor")
        .order_by("id")
    ):
        responses[decision.organisation_id] = decision
    return responses


def wave_totals_seen_by(wave: Wave, user: User) -> tuple[int, int]:
    """(mailboxes, bytes) of the wave as `user` may know it: the whole wave for the programme office, only the
    user's own organisations' share of a shared wave for anyone else (a trust learns nothing of the others in
    it). One GROUP BY over the wave's members (or its counters once stamped) for a trust user."""
    if user.is_programme_office:
        return wave.planned_mailboxes, wave.planned_bytes
    totals = wave_organisation_totals(wave)
    mine = organisations_visible_to(user).filter(pk__in=list(totals)).values_list("pk", flat=True)
    return sum(totals[pk][0] for pk in mine), sum(totals[pk][1] for pk in mine)


def wave_organisation_rows(
    wave: Wave, user: User, totals: dict[int, tuple[int, int]] | None = None
) -> list[dict]:
    """The organisations in the wave that the user may see, with counts, bytes and their response. Pass the
    wave_organisation_totals already read to save reading the members twice."""
    totals = wave_organisation_totals(wave) if totals is None else totals
    visible = organisations_visible_to(user).filter(pk__in=list(totals)).order_by("priority", "ods_code")
    responses = wave_responses(wave)
    rows = []
    for org in visible:
        mailboxes, size = totals[org.pk]
        response = responses.get(org.pk)
        rows.append(
            {
                "organisation": org,
                "mailboxes": mailboxes,
                "bytes": size,
                "response": response.kind if response else "",
                "response_decision": response,
            }
        )
    return rows


def wave_missing_go(wave: Wave) -> list[int]:
    """Organisations in the wave that have not said go since it was proposed."""
    responses = wave_responses(wave)
    return sorted(
        org_id
        for org_id in wave_organisation_ids(wave)
        if org_id not in responses or responses[org_id].kind != Decision.Kind.GO
    )


def wave_of_mailbox(mailbox: Mailbox) -> Wave | None:
    """The wave a mailbox is in, by either rule."""
    if mailbox.wave_id:
        return mailbox.wave
    if mailbox.state != Mailbox.State.READY:
        return None
    covering = allocation_matches(
        Allocation.objects.filter(
            organisation_id=mailbox.organisation_id, wave__status__in=ALLOCATING_STATUSES
        ).order_by("wave__starts_at", "wave_id")
    )
    # The OuterRefs need an outer query: evaluate them against this one mailbox row.
    hit = (
        Mailbox.objects.filter(pk=mailbox.pk)
        .annotate(wave_hit=Subquery(covering.values("wave_id")[:1]))
        .values_list("wave_hit", flat=True)
        .first()
    )
    return Wave.objects.filter(pk=hit).first() if hit else None


def waves_visible_to(user: User) -> QuerySet[Wave]:
    """Programme office and viewers see every wave; a trust admin sees the waves their organisations are in."""
    if not user.is_authenticated or not user.is_active:
        return Wave.objects.none()
    if user.is_programme_office or user.is_viewer:
        return Wave.objects.all()
    orgs = organisations_visible_to(user).values("pk")
    # stamped membership from the mailbox counters (a few rows per organisation), not the mailbox rows
    stamped = MailboxCounter.objects.filter(organisation_id__in=orgs, mailboxes__gt=0).exclude(wave_id=0)
    return Wave.objects.filter(
        Q(pk__in=Allocation.objects.filter(organisation__in=orgs).values("wave_id"))
        | Q(pk__in=stamped.values("wave_id"))
    )


def decisions_visible_to(user: User) -> QuerySet[Decision]:
    """Decisions on the waves the user sees; a trust admin sees wave-wide decisions and their own
    organisations' go / no-go, not other organisations'."""
    if not user.is_authenticated or not user.is_active:
        return Decision.objects.none()
    if user.is_programme_office or user.is_viewer:
        return Decision.objects.all()
    return Decision.objects.filter(wave__in=waves_visible_to(user)).filter(
        Q(organisation__isnull=True) | Q(organisation__in=organisations_visible_to(user))
    )


def waves_by_week(waves: Iterable[Wave]) -> list[tuple[dt.date, list[Wave]]]:
    """[(Monday of the week, [waves starting that week])], in order: the timeline."""
    weeks: dict[dt.date, list[Wave]] = defaultdict(list)
    for wave in waves:
        day = wave.starts_at.astimezone(LONDON).date()
        weeks[day - dt.timedelta(days=day.weekday())].append(wave)
    return sorted(weeks.items())


def plan_unplaced_rows(plan, *, limit: int = 500) -> list[dict]:
    """What a plan could not place, with ODS codes and reasons, largest first (one query for the codes)."""
    items = sorted(plan.unplaced, key=lambda u: (-u.mailboxes, u.pieces[0].organisation_id))[:limit]
    ids = {p.organisation_id for u in items for p in u.pieces}
    codes = dict(Organisation.objects.filter(pk__in=ids).values_list("id", "ods_code"))
    return [
        {
            "organisations": sorted({codes.get(p.organisation_id, str(p.organisation_id)) for p in u.pieces}),
            "affinity_groups": sorted({p.affinity_group for p in u.pieces if p.affinity_group}),
            "mailboxes": u.mailboxes,
            "bytes": u.bytes,
            "reason": u.reason,
            "message": u.message,
        }
        for u in items
    ]
