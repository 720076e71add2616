"""Programme settings and closed dates: the windows and planning rules the programme office sets."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction

from migrations_app.models import ClosedPeriod, Organisation, ProgrammeSettings, User
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record
from migrations_app.templatetags import filesizeformat_binary

SETTINGS_FIELDS = (
    "evening_days",
    "evening_starts",
    "evening_ends",
    "evening_capacity_mailboxes",
    "evening_capacity_bytes",
    "weekend_start_day",
    "weekend_starts",
    "weekend_end_day",
    "weekend_ends",
    "weekend_capacity_mailboxes",
    "weekend_capacity_bytes",
    "single_wave_organisation_max",
    "large_organisation_chunk",
    "pilot_mailboxes_per_organisation",
    "planning_horizon_days",
    "go_required_from_every_organisation",
    "required_gates",
    "readiness_recheck_hours",
)


def _shown(name: str, value) -> str:
    """A setting as people read it in the audit trail: "Monday, Tuesday", "18:00", "30.0 TB", "22000"."""
    if name == "evening_days":
        return ", ".join(ProgrammeSettings.Weekday(int(d)).label for d in value) or "none"
    if name.endswith("_bytes"):
        return filesizeformat_binary(value)
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if name.endswith("_day"):
        return ProgrammeSettings.Weekday(value).label
    return str(value)


@transaction.atomic
def programme_settings_update(*, actor: User, **changes) -> ProgrammeSettings:
    """Change the windows and planning rules. Waves already planned keep their capacity; the next plan uses
    the new rules."""
    require_programme_office(actor)
    settings = ProgrammeSettings.load()
    before = {name: getattr(settings, name) for name in SETTINGS_FIELDS}
    for name, value in changes.items():
        if name not in SETTINGS_FIELDS:
            raise ValidationError(f"Unknown setting {name}")
        if name == "required_gates":
            unknown = sorted(set(value) - set(Organisation.GATES))
            if unknown:
                raise ValidationError({"required_gates": f"Unknown readiness gates: {', '.join(unknown)}"})
            value = [g for g in Organisation.GATES if g in value]
        setattr(settings, name, value)
    settings.full_clean()
    settings.save()
    changed = {
        n: [_shown(n, before[n]), _shown(n, getattr(settings, n))]
        for n in SETTINGS_FIELDS
        if before[n] != getattr(settings, n)
    }
    if changed:
        event_record(
            action="programme.settings_changed",
            actor=actor,
            subject=", ".join(ProgrammeSettings._meta.get_field(n).verbose_name for n in changed),
            data=changed,
        )
    return settings


@transaction.atomic
def closed_period_add(
    *, actor: User, kind: str, starts_on: dt.date, ends_on: dt.date, name: str
) -> ClosedPeriod:
    require_programme_office(actor)
    period = ClosedPeriod(kind=kind, starts_on=starts_on, ends_on=ends_on, name=name.strip())
    period.full_clean()
    if ends_on < starts_on:
        raise ValidationError({"ends_on": "The end date must be on or after the start date"})
    period.save()
    event_record(
        action="programme.closed_period_added",
        actor=actor,
        subject=period.name,
        message=f"{period.get_kind_display()} {starts_on} to {ends_on}",
    )
    return period


@transaction.atomic
def closed_period_remove(*, actor: User, period: ClosedPeriod) -> None:
    require_programme_office(actor)
    event_record(
        action="programme.closed_period_removed",
        actor=actor,
        subject=period.name,
        message=f"{period.get_kind_display()} {period.starts_on} to {period.ends_on}",
    )
    period.delete()
