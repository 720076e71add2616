"""The digest to an organisation's contacts: one email per contact, per wave and moment, summarising the
organisation's mailboxes in the wave (how many move in which window, how many owners were told, the shared,
room and equipment mailboxes that have no owner to tell, the addresses to fix, and after the window the ones
that failed or were carried over), with a link to the organisation's page.

A digest is a Notification row without a mailbox, so it goes through the same queue, limits, receipts and
retries as the owners' emails; the partial unique (organisation, wave, moment, occasion, recipient) makes it
at-most-once. Scheduling is one INSERT ... SELECT per (wave, moment) over the organisations with mailboxes in
it, joined to their contacts; inserted after the owners' rows of the same moment, so (the queue being
nearest window, then id) it goes out after them and its "told" count is what the owners were sent. Its
figures are read when it is sent, a few grouped queries for a whole claim.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.urls import reverse

from migrations_app.models import Contact, Mailbox, Moment, Notification, Organisation, Wave

M = Mailbox.State
N = Notification.Status
BEFORE = (Moment.FIRST, Moment.REMINDER, Moment.DAY_OF, Moment.UPDATE)
TO_MOVE = (M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.SWITCHING, M.VERIFYING)
TOLD = (N.SENT, N.DELIVERED)
WAITING = (N.PENDING, N.SENDING, N.TEMPORARY_FAILURE, N.TECHNICAL_FAILURE)
BAD = (N.PERMANENT_FAILURE, N.REJECTED)
LISTED = 20  # mailboxes named in a digest per list; the rest are on the organisation's page

OCCASIONS = {
    Moment.FIRST: "your staff are told their mailboxes move",
    Moment.REMINDER: "your staff are reminded of their move",
    Moment.DAY_OF: "your staff's mailboxes move today",
    Moment.UPDATE: "a new date for your staff's moves",
    Moment.AFTER: "the move is over",
}


def digest_insert(mailboxes, *, wave: Wave, moment: str, occasion: str, now: dt.datetime) -> int:
    """One digest row per contact of each organisation with a mailbox in `mailboxes` (a queryset): INSERT ...
    SELECT ... ON CONFLICT DO NOTHING. An organisation without contacts gets one row with no recipient
    (kept as *nobody to send to*, shown on its page); a contact added later gets its own row next run."""
    orgs_sql, orgs_params = mailboxes.values("organisation_id").distinct().query.sql_with_params()
    q = connection.ops.quote_name
    recipient = f"COALESCE(LOWER(c.{q('email')}), '')"
    sql = f"""
        INSERT INTO {q(Notification._meta.db_table)} (mailbox_id, organisation_id, wave_id, moment, occasion,
            recipient, window_starts_at, status, attempts, error, created_at)
        SELECT NULL, o.organisation_id, %s, %s, %s, {recipient}, %s, %s, 0, '', %s
        FROM ({orgs_sql}) o LEFT JOIN {q(Contact._meta.db_table)} c ON c.organisation_id = o.organisation_id
        WHERE 1 = 1
        GROUP BY o.organisation_id, {recipient}
        ON CONFLICT DO NOTHING"""
    # The SELECT list's parameters come first in the text, then the organisations' subquery's.
    params = [wave.pk, moment, occasion, wave.starts_at, N.PENDING, now, *orgs_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


@dataclass
class _Figures:
    by_state: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ownerless: int = 0  # shared, room, equipment still to move
    carried: int = 0
    owners: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))  # (moment, status)
    bad: int = 0
    ownerless_list: list[tuple[str, str]] = field(default_factory=list)
    delayed_list: list[tuple[str, str]] = field(default_factory=list)


def _figures(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], _Figures]:
    """The figures of every (organisation, wave) in a claim: three grouped queries and two short lists."""
    org_ids, wave_ids = {p[0] for p in pairs}, {p[1] for p in pairs}
    figures: dict[tuple[int, int], _Figures] = defaultdict(_Figures)
    members = Mailbox.objects.filter(organisation_id__in=org_ids, wave_id__in=wave_ids)
    for row in members.values("organisation_id", "wave_id", "kind", "state", "carried_over").annotate(
        n=Count("id")
    ):
        key = (row["organisation_id"], row["wave_id"])
        if key not in pairs:
            continue
        f = figures[key]
        f.by_state[row["state"]] += row["n"]
        if row["carried_over"] and row["state"] != M.MIGRATED:
            f.carried += row["n"]
        if row["kind"] != Mailbox.Kind.USER and row["state"] in TO_MOVE:
            f.ownerless += row["n"]
    owners = Notification.objects.filter(
        organisation_id__in=org_ids, wave_id__in=wave_ids, mailbox__isnull=False
    )
    for row in owners.values("organisation_id", "wave_id", "moment", "status").annotate(n=Count("id")):
        key = (row["organisation_id"], row["wave_id"])
        if key in pairs:
            figures[key].owners[(row["moment"], row["status"])] += row["n"]
            if row["status"] in BAD:
                figures[key].bad += row["n"]

    def first(queryset):
        return queryset.annotate(
            rank=Window(
                RowNumber(), partition_by=[F("organisation_id"), F("wave_id")], order_by=F("email").asc()
            )
        ).filter(rank__lte=LISTED)

    ownerless = members.exclude(kind=Mailbox.Kind.USER).filter(state__in=TO_MOVE)
    for org, wave, email, kind in first(ownerless).values_list("organisation_id", "wave_id", "email", "kind"):
        if (org, wave) in pairs:
            figures[(org, wave)].ownerless_list.append((email, Mailbox.Kind(kind).label.lower()))
    delayed = members.filter(Q(state=M.FAILED) | Q(carried_over=True) & ~Q(state=M.MIGRATED))
    for org, wave, email, state in first(delayed).values_list("organisation_id", "wave_id", "email", "state"):
        if (org, wave) in pairs:
            figures[(org, wave)].delayed_list.append(
                (email, "failed" if state == M.FAILED else "carried over")
            )
    return figures


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _told_line(f: _Figures, moments: tuple[str, ...], what: str) -> str:
    told = sum(f.owners[(m, s)] for m in moments for s in TOLD)
    waiting = sum(f.owners[(m, s)] for m in moments for s in WAITING)
    line = f"* {_n(told, 'owner')} told by email {what}"
    return line + (f", {waiting:,} more being sent" if waiting else "")


def _listed(items: list[tuple[str, str]], total: int) -> list[str]:
    lines = [f"  - {email} ({label})" for email, label in items]
    if total > len(items):
        lines.append(f"  - and {total - len(items):,} more: see the organisation's page")
    return lines


def summary_before(f: _Figures, moment: str) -> str:
    to_move = sum(f.by_state[s] for s in TO_MOVE)
    staff = to_move - f.ownerless
    lines = [
        f"{_n(to_move, 'mailbox', 'mailboxes')} of yours move in this window:",
        f"* {_n(staff, 'staff mailbox', 'staff mailboxes')}",
        _told_line(f, (moment, Moment.UPDATE) if moment != Moment.UPDATE else (moment,), "about it"),
    ]
    if f.ownerless:
        lines.append(
            f"* {_n(f.ownerless, 'shared, room or equipment mailbox', 'shared, room and equipment mailboxes')} "
            "with no owner address, so nobody was told: please tell the people who use them"
        )
        lines += _listed(f.ownerless_list, f.ownerless)
    if f.bad:
        lines.append(
            f"* {_n(f.bad, 'address', 'addresses')} GOV.UK Notify could not deliver to: please fix them"
        )
    return "\n".join(lines)


def summary_after(f: _Figures) -> str:
    total = sum(f.by_state.values())
    failed, moved = f.by_state[M.FAILED], f.by_state[M.MIGRATED]
    lines = [
        f"{_n(total, 'mailbox', 'mailboxes')} of yours were in this window:",
        f"* {_n(moved, 'mailbox', 'mailboxes')} moved",
        _told_line(f, (Moment.AFTER,), "what to do now"),
    ]
    if failed or f.carried:
        lines.append(
            f"* {_n(failed, 'mailbox', 'mailboxes')} failed and {_n(f.carried, 'was', 'were')} carried over "
            "to a later date: they keep working as before"
        )
        lines.append(_told_line(f, (Moment.DELAYED,), "that their move is delayed"))
        lines += _listed(f.delayed_list, failed + f.carried)
    still = total - moved - failed - f.carried
    if still > 0:
        lines.append(f"* {_n(still, 'mailbox', 'mailboxes')} not moved yet")
    if f.bad:
        lines.append(
            f"* {_n(f.bad, 'address', 'addresses')} GOV.UK Notify could not deliver to: please fix them"
        )
    return "\n".join(lines)


def digest_values(rows: list[Notification]) -> dict[int, dict[str, str]]:
    """The placeholders of each digest row in a claim (rows without a mailbox), by row id."""
    pairs = {(r.organisation_id, r.wave_id) for r in rows}
    if not pairs:
        return {}
    figures = _figures(pairs)
    orgs = {
        o.pk: o for o in Organisation.objects.filter(pk__in={p[0] for p in pairs}).only("name", "ods_code")
    }
    waves = Wave.objects.in_bulk({p[1] for p in pairs})
    values = {}
    for row in rows:
        f, org, wave = (
            figures[(row.organisation_id, row.wave_id)],
            orgs.get(row.organisation_id),
            waves.get(row.wave_id),
        )
        values[row.pk] = digest_placeholders(organisation=org, wave=wave, moment=row.moment, figures=f)
    return values


def digest_placeholders(
    *, organisation, wave, moment: str, figures: _Figures | None = None
) -> dict[str, str]:
    from migrations_app.services.notifications.templates import window_text

    if figures is None:
        figures = _figures({(organisation.pk, wave.pk)})[(organisation.pk, wave.pk)]
    page = reverse("organisation_detail", kwargs={"ods_code": organisation.ods_code}) if organisation else "/"
    return {
        "organisation": organisation.name if organisation else "",
        "wave": wave.name if wave else "",
        "window": window_text(wave.starts_at, wave.ends_at) if wave else "a date to be agreed",
        "occasion": OCCASIONS.get(moment, ""),
        "summary": summary_after(figures)
        if moment in (Moment.AFTER, Moment.DELAYED)
        else summary_before(figures, moment),
        "portal_url": settings.PORTAL_BASE_URL.rstrip("/") + page,
        "help_url": settings.PUBLIC_HELP_URL,
    }
