"""Plans: preview the plan for every plannable mailbox, and commit it as draft waves and their allocations
(docs/adr/007-planner-allocations.md). Mailbox rows get their wave when the wave is approved
(services.waves.wave_approve)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from migrations_app.models import Allocation, Mailbox, ProgrammeSettings, User, Wave
from migrations_app.planning.calendar import EVENING, LONDON, Window, WindowRules, windows_between
from migrations_app.planning.placement import Plan, plan_units
from migrations_app.planning.units import Piece, build_units, large_organisations
from migrations_app.selectors.planning import (
    _chunk_rows,
    _group_rows,
    _org_infos,
    _plannable,
    _replaceable_drafts,
    _used_capacity,
    closed_periods,
)
from migrations_app.selectors.readiness import plan_left_out
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record

MAX_YEARS_AHEAD = 10


def _plan_end(start: dt.date, horizon_days: int) -> dt.date:
    """The last day planned; a start date past any programme's reach is a clear error (it was a 500 when the
    horizon ran past the year 9999)."""
    if start > timezone.localdate() + dt.timedelta(days=365 * MAX_YEARS_AHEAD):
        raise ValidationError({"start": f"Choose a start date within {MAX_YEARS_AHEAD} years from today"})
    try:
        end = start + dt.timedelta(days=horizon_days - 1)
        end + dt.timedelta(days=7)  # the windows and blackouts read a few days past the end
    except OverflowError:
        raise ValidationError({"start": "The planning horizon runs past the last date there is"}) from None
    return end


def plan_preview(*, start: dt.date, actor: User | None = None, replace_drafts: bool = True) -> Plan:
    """The plan for every plannable mailbox from `start`, saving nothing."""
    if actor is not None:
        require_programme_office(actor)
    settings = ProgrammeSettings.load()
    rules = WindowRules.from_settings(settings)
    end = _plan_end(start, settings.planning_horizon_days)
    windows = windows_between(rules, start, end, closed_periods(start, end))
    replaced = list(_replaceable_drafts().values_list("pk", flat=True)) if replace_drafts else []
    qs = _plannable(replaced)
    rows = _group_rows(qs)
    orgs = _org_infos((r.organisation_id for r in rows), start, end + dt.timedelta(days=4))
    large = large_organisations(rules, orgs, rows)
    chunks = _chunk_rows(qs, large, rules.large_organisation_chunk)
    units = build_units(orgs, rows, chunks, large)
    plan = plan_units(windows, units, used=_used_capacity(replaced), start=start, end=end)
    plan.left_out = plan_left_out()
    return plan


def wave_name(window: Window, *, pilot: bool = False) -> str:
    starts = window.starts_at.astimezone(LONDON)
    ends = window.ends_at.astimezone(LONDON)
    prefix = "Pilot " if pilot else ""
    if window.kind == EVENING:
        return f"{prefix}Evening {starts:%a} {starts.day} {starts:%b %Y}"
    return f"{prefix}Weekend {starts.day} {starts:%b} to {ends.day} {ends:%b %Y}"


@transaction.atomic
def plan_commit(
    *, start: dt.date, actor: User, expected_fingerprint: str = "", replace_drafts: bool = True
) -> tuple[Plan, list[Wave]]:
    """Save the plan as draft waves and their allocations. Replaces the draft waves of an earlier plan that
    nobody has proposed yet. Refuses if the plan is no longer the one previewed (expected_fingerprint)."""
    require_programme_office(actor)
    ProgrammeSettings.load()
    # one planner at a time: two commits at once would plan the same mailboxes twice
    ProgrammeSettings.objects.select_for_update().get(pk=1)
    # lock the drafts we replace: a proposal racing this commit waits, then finds its wave gone (WaveConflict)
    replaced = (
        list(_replaceable_drafts().select_for_update().values_list("pk", flat=True)) if replace_drafts else []
    )
    if replaced:
        Mailbox.objects.filter(wave_id__in=replaced).update(wave=None)
        Allocation.objects.filter(wave_id__in=replaced).delete()
        Wave.objects.filter(pk__in=replaced).delete()
    plan = plan_preview(start=start, replace_drafts=False)
    if expected_fingerprint and plan.fingerprint != expected_fingerprint:
        raise ValidationError(
            "The plan has changed since you previewed it (inventories or settings changed). "
            "Preview it again before saving."
        )
    now = timezone.now()
    waves = [
        Wave(
            name=wave_name(p.window),
            kind=p.window.kind,
            starts_at=p.window.starts_at,
            ends_at=p.window.ends_at,
            capacity_mailboxes=p.capacity_mailboxes,
            capacity_bytes=p.capacity_bytes,
            planned_mailboxes=p.mailboxes,
            planned_bytes=p.bytes,
            status=Wave.Status.DRAFT,
            created_at=now,
            updated_at=now,
        )
        for p in plan.waves
    ]
    waves = Wave.objects.bulk_create(waves)
    _save_allocations(
        (wave.pk, piece) for wave, planned in zip(waves, plan.waves, strict=True) for piece in planned.pieces
    )
    event_record(
        action="plan.committed",
        actor=actor,
        subject=f"{len(waves)} waves from {start}",
        message=f"{plan.mailboxes} mailboxes in {len(waves)} draft waves; {plan.unplaced_mailboxes} not placed",
        data={
            "start": start.isoformat(),
            "waves": len(waves),
            "mailboxes": plan.mailboxes,
            "bytes": plan.bytes,
            "unplaced_mailboxes": plan.unplaced_mailboxes,
            "replaced_waves": len(replaced),
            "fingerprint": plan.fingerprint,
        },
    )
    return plan, waves


def _save_allocations(items: Iterable[tuple[int, Piece]]) -> None:
    now = timezone.now()
    rows = [
        (
            wave_id,
            p.organisation_id,
            p.kind,
            p.affinity_group,
            p.first_id,
            p.last_id,
            p.mailboxes,
            p.bytes,
            now,
        )
        for wave_id, p in items
    ]
    if connection.vendor == "postgresql":
        # COPY: tens of thousands of rows in a fraction of the time of INSERTs
        table = Allocation._meta.db_table
        columns = (
            "wave_id",
            "organisation_id",
            "kind",
            "affinity_group",
            "first_mailbox_id",
            "last_mailbox_id",
            "planned_mailboxes",
            "planned_bytes",
            "created_at",
        )
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    Allocation.objects.bulk_create(
        [
            Allocation(
                wave_id=w,
                organisation_id=o,
                kind=k,
                affinity_group=g,
                first_mailbox_id=lo,
                last_mailbox_id=hi,
                planned_mailboxes=m,
                planned_bytes=b,
            )
            for w, o, k, g, lo, hi, m, b, _ in rows
        ],
        batch_size=2000,
    )
