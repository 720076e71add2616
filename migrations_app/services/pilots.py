"""Pilot waves: a handful of ready mailboxes from each organisation, pinned to a new draft wave."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.db.models import Window as SqlWindow
from django.db.models.functions import RowNumber
from django.utils import timezone

from migrations_app.models import Mailbox, Organisation, ProgrammeSettings, User, Wave
from migrations_app.planning.calendar import EVENING, WindowRules, windows_between
from migrations_app.selectors.planning import closed_periods, without_unmet_gates
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record
from migrations_app.services.plans import wave_name
from migrations_app.services.wave_moves import waves_refresh_planned


@transaction.atomic
def pilot_wave_create(
    *,
    actor: User,
    starts_on: dt.date,
    kind: str = EVENING,
    organisations: Iterable[Organisation] | None = None,
    per_organisation: int | None = None,
) -> Wave:
    """A pilot wave: a handful of ready ungrouped mailboxes (smallest first) from each organisation, pinned
    to a new draft wave in the window of `kind` starting on `starts_on`. One set-based UPDATE."""
    require_programme_office(actor)
    settings = ProgrammeSettings.load()
    per_org = per_organisation or settings.pilot_mailboxes_per_organisation
    if per_org < 1:
        raise ValidationError({"per_organisation": "Pick at least one mailbox per organisation"})
    rules = WindowRules.from_settings(settings)
    windows = [
        w
        for w in windows_between(rules, starts_on, starts_on, closed_periods(starts_on, starts_on))
        if w.kind == kind
    ]
    if not windows:
        raise ValidationError(
            {
                "starts_on": f"No {Wave.Kind(kind).label.lower()} window starts on {starts_on} "
                "(check the window days, bank holidays and freezes)"
            }
        )
    window = windows[0]
    candidates = without_unmet_gates(
        Mailbox.objects.filter(
            state=Mailbox.State.READY, wave__isnull=True, affinity_group="", kind=Mailbox.Kind.USER
        )
    )
    if organisations is not None:
        org_ids = [o.pk for o in organisations]
        if not org_ids:
            raise ValidationError({"organisations": "Choose at least one organisation"})
        candidates = candidates.filter(organisation_id__in=org_ids)
    ranked = (
        candidates.order_by()
        .annotate(
            rn=SqlWindow(
                RowNumber(),
                partition_by=[F("organisation_id")],
                order_by=[F("size_bytes").asc(), F("id").asc()],
            )
        )
        .filter(rn__lte=per_org)
        .values_list("id", "size_bytes")
    )
    picked = list(ranked)
    if not picked:
        raise ValidationError(
            "No ready mailboxes without an affinity group to pilot in those organisations (only checked, "
            "ready mailboxes of organisations that meet the required readiness gates are piloted)"
        )
    if len(picked) > window.capacity_mailboxes:
        raise ValidationError(
            f"{len(picked):,} pilot mailboxes are more than the window holds "
            f"({window.capacity_mailboxes:,}): choose fewer organisations"
        )
    wave = Wave.objects.create(
        name=wave_name(window, pilot=True),
        kind=window.kind,
        is_pilot=True,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        capacity_mailboxes=window.capacity_mailboxes,
        capacity_bytes=window.capacity_bytes,
        planned_mailboxes=len(picked),
        planned_bytes=sum(size for _, size in picked),
    )
    ids = [pk for pk, _ in picked]
    for i in range(0, len(ids), 5000):
        Mailbox.objects.filter(pk__in=ids[i : i + 5000], state=Mailbox.State.READY, wave__isnull=True).update(
            wave=wave, updated_at=timezone.now()
        )
    # the draft and proposed waves these mailboxes were planned in hold fewer now
    waves_refresh_planned(
        organisation_ids=Mailbox.objects.filter(wave=wave).values_list("organisation_id", flat=True)
    )
    event_record(
        action="wave.pilot_created",
        actor=actor,
        wave=wave,
        subject=wave.name,
        message=f"Pilot wave of {len(ids)} mailboxes, up to {per_org} per organisation",
        data={"mailboxes": len(ids), "per_organisation": per_org},
    )
    return wave
