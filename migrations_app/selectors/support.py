"""The support rate: distinct mailboxes with a support request or ticket within N days (7 by default) after
their move, divided by the mailboxes moved (a request counts against the wave its mailbox was in when it came); per wave and organisation, for the programme, and the categories
that drive it. A move's time is its wave's window: a request counts from the window's start to N days after
its end. Grouped counts over indexed columns (supportrequest_mailbox_idx, mailbox_wave_state_idx); no loop over
mailboxes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count, F, Q, Sum

from migrations_app.models import (
    Mailbox,
    MailboxCounter,
    NotificationSettings,
    Organisation,
    SupportRequest,
    Wave,
)
from migrations_app.selectors.progress import OrganisationCounters, organisation_counters

M = Mailbox.State
GOAL_PERCENT = Decimal("1.2")  # the reference programme: fewer than 1.2% of users needed support


def percent(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"))


def _window_days() -> dt.timedelta:
    return dt.timedelta(days=NotificationSettings.load().support_window_days)


def _counted(requests, days: dt.timedelta):
    """Requests within the window after the wave the mailbox was in when they came (its start to N days after
    its end). Joins the wave only, never the mailbox table."""
    return requests.filter(
        wave__isnull=False,
        opened_at__gte=F("wave__starts_at"),
        opened_at__lt=F("wave__ends_at") + days,
    )


def wave_support(*, wave: Wave, organisation_ids: list[int] | None = None) -> dict:
    """{"moved", "supported", "rate", "failed", "total", "failure_rate", "organisations": [...], "categories"}."""
    days = _window_days()
    members = Mailbox.objects.filter(wave=wave)
    requests = _counted(SupportRequest.objects.filter(wave=wave), days)
    if organisation_ids is not None:
        members = members.filter(organisation_id__in=organisation_ids)
        requests = requests.filter(organisation_id__in=organisation_ids)
    per_org = {
        row["organisation_id"]: row
        for row in members.values("organisation_id").annotate(
            total=Count("id"),
            moved=Count("id", filter=Q(state=M.MIGRATED)),
            failed=Count("id", filter=Q(state=M.FAILED)),
        )
    }
    supported = dict(
        requests.values("organisation_id")
        .annotate(n=Count("mailbox_id", distinct=True))
        .values_list("organisation_id", "n")
    )
    names = dict(Organisation.objects.filter(pk__in=per_org).values_list("pk", "ods_code"))
    organisations = []
    for org_id, row in sorted(per_org.items(), key=lambda item: names.get(item[0], "")):
        count = supported.get(org_id, 0)
        organisations.append(
            {
                "organisation_id": org_id,
                "ods_code": names.get(org_id, ""),
                "moved": row["moved"],
                "supported": count,
                "rate": percent(count, row["moved"]),
                "failed": row["failed"],
                "total": row["total"],
                "failure_rate": percent(row["failed"], row["total"]),
            }
        )
    moved = sum(o["moved"] for o in organisations)
    total = sum(o["total"] for o in organisations)
    failed = sum(o["failed"] for o in organisations)
    count = sum(o["supported"] for o in organisations)
    return {
        "moved": moved,
        "supported": count,
        "rate": percent(count, moved),
        "failed": failed,
        "total": total,
        "failure_rate": percent(failed, total),
        "goal": GOAL_PERCENT,
        "organisations": organisations,
        "categories": _categories(requests),
    }


def _categories(requests) -> list[dict]:
    labels = dict(SupportRequest.Category.choices)
    rows = (
        requests.values("category").annotate(n=Count("mailbox_id", distinct=True)).order_by("-n", "category")
    )
    return [
        {"category": r["category"], "label": labels.get(r["category"], r["category"]), "mailboxes": r["n"]}
        for r in rows
    ]


def organisation_support(*, organisation: Organisation, counters: OrganisationCounters | None = None) -> dict:
    """The organisation's rate over all its moves, per wave, and its categories. `counters`: the
    organisation's counters when the page has read them already (selectors.progress.organisation_counters)."""
    days = _window_days()
    # from the status counters: the organisation page reads no mailbox rows
    if counters is None:
        counters = organisation_counters(organisation)
    moved_by_wave: dict[int, int] = {}
    for state, wave, n, _ in counters.rows:
        if state == M.MIGRATED and wave and n:
            moved_by_wave[wave] = moved_by_wave.get(wave, 0) + n
    requests = _counted(SupportRequest.objects.filter(organisation=organisation), days)
    supported_by_wave = dict(
        requests.values("wave_id").annotate(n=Count("mailbox_id", distinct=True)).values_list("wave_id", "n")
    )
    waves = Wave.objects.filter(pk__in=moved_by_wave).order_by("starts_at")
    rows = [
        {
            "wave": wave,
            "moved": moved_by_wave[wave.pk],
            "supported": supported_by_wave.get(wave.pk, 0),
            "rate": percent(supported_by_wave.get(wave.pk, 0), moved_by_wave[wave.pk]),
        }
        for wave in waves
    ]
    moved, supported = sum(moved_by_wave.values()), sum(supported_by_wave.values())
    return {
        "moved": moved,
        "supported": supported,
        "rate": percent(supported, moved),
        "goal": GOAL_PERCENT,
        "waves": rows,
        "categories": _categories(requests),
    }


def programme_support() -> dict:
    """The whole programme against the 1.2% goal: moved from the status counters (no mailbox rows read), the
    requests joined to their wave."""
    days = _window_days()
    moved = (
        MailboxCounter.objects.filter(state=M.MIGRATED).exclude(wave_id=0).aggregate(n=Sum("mailboxes"))["n"]
        or 0
    )
    requests = _counted(SupportRequest.objects.all(), days)
    supported = requests.aggregate(n=Count("mailbox_id", distinct=True))["n"]
    return {
        "moved": moved,
        "supported": supported,
        "rate": percent(supported, moved),
        "goal": GOAL_PERCENT,
        "categories": _categories(requests),
    }


def programme_support_shared() -> dict:
    """programme_support, the same for everyone, shared in the cache for PROGRAMME_SUPPORT_CACHE_SECONDS (30 s):
    every dashboard shows it, and its largest part (moved, summed over every counter of the programme) costs
    about 7 ms at national scale while a rate over seven days moves slowly; 0 turns the sharing off."""
    from django.conf import settings

    from migrations_app.selectors.shared import kept_shared

    seconds = settings.PROGRAMME_SUPPORT_CACHE_SECONDS
    if seconds <= 0:
        return programme_support()
    return kept_shared("programme-support", seconds, programme_support)
