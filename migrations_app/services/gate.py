"""The support-rate gate. The programme office sets thresholds (support rate, failure rate) in
NotificationSettings. When an organisation's wave crosses one, the organisation is put on hold: approval of
any wave containing it is refused until the trust gives go again or the programme office overrides with a
reason. Each step is an Event; the reason is shown on the organisation's page (both sides) and the wave's.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from migrations_app.models import NotificationSettings, Organisation, OrganisationHold, User, Wave
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.selectors.support import wave_support
from migrations_app.selectors.waves import wave_organisation_ids
from migrations_app.services.events import event_record

W = Wave.Status


def _crossed(row: dict, settings: NotificationSettings) -> list[str]:
    reasons = []
    if row["rate"] is not None and row["rate"] > settings.support_rate_threshold:
        reasons.append(
            f"{row['rate']}% of its moved mailboxes needed support (threshold {settings.support_rate_threshold}%)"
        )
    if row["failure_rate"] is not None and row["failure_rate"] > settings.failure_rate_threshold:
        reasons.append(
            f"{row['failure_rate']}% of its mailboxes failed (threshold {settings.failure_rate_threshold}%)"
        )
    return reasons


def gate_evaluate_wave(*, wave: Wave) -> list[OrganisationHold]:
    """Hold every organisation of the wave that crossed a threshold (once per organisation and wave)."""
    settings = NotificationSettings.load()
    holds = []
    for row in wave_support(wave=wave)["organisations"]:
        reasons = _crossed(row, settings)
        if not reasons:
            continue
        reason = f"In {wave.name}, " + " and ".join(reasons) + ": its next waves wait for its go."
        try:
            with transaction.atomic():
                hold = OrganisationHold.objects.create(
                    organisation_id=row["organisation_id"],
                    wave=wave,
                    reason=reason,
                    support_rate=row["rate"],
                    failure_rate=row["failure_rate"],
                )
                event_record(
                    action="organisation.held",
                    organisation=hold.organisation,
                    wave=wave,
                    subject=row["ods_code"],
                    message=reason,
                    data={
                        "hold": hold.pk,
                        "support_rate": str(row["rate"]),
                        "failure_rate": str(row["failure_rate"]),
                    },
                )
        except IntegrityError:
            continue  # already held for this wave (the unique constraint): never twice
        holds.append(hold)
    return holds


def gate_evaluate(*, now: dt.datetime | None = None) -> list[OrganisationHold]:
    """Beat: the waves whose support window is still open (started, ended at most N days ago)."""
    now = now or timezone.now()
    days = dt.timedelta(days=NotificationSettings.load().support_window_days + 1)
    waves = Wave.objects.filter(
        status__in=(W.RUNNING, W.PAUSED, W.COMPLETED), starts_at__lte=now, ends_at__gte=now - days
    )
    holds = []
    for wave in waves:
        holds.extend(gate_evaluate_wave(wave=wave))
    return holds


def held_organisation_ids(organisation_ids) -> list[int]:
    return list(
        OrganisationHold.objects.filter(organisation_id__in=organisation_ids, released_at__isnull=True)
        .values_list("organisation_id", flat=True)
        .distinct()
    )


def gate_check_approval(*, wave: Wave) -> None:
    """Refuse approval of a wave containing a held organisation (called by wave_approve)."""
    held = held_organisation_ids(wave_organisation_ids(wave))
    if held:
        codes = sorted(Organisation.objects.filter(pk__in=held).values_list("ods_code", flat=True))
        raise ValidationError(
            f"{', '.join(codes)} {'is' if len(codes) == 1 else 'are'} on hold after a wave that crossed the support "
            "gate: the trust must give go again, or the programme office override the hold with a reason"
        )


def _release(*, organisation: Organisation, actor: User, kind: str, reason: str) -> int:
    with transaction.atomic():
        released = OrganisationHold.objects.filter(
            organisation=organisation, released_at__isnull=True
        ).update(released_at=timezone.now(), released_by=actor, release=kind, release_reason=reason)
        if not released:
            raise ValidationError(f"{organisation.ods_code} is not on hold")
        event_record(
            action="organisation.hold_go"
            if kind == OrganisationHold.Release.GO
            else "organisation.hold_overridden",
            actor=actor,
            organisation=organisation,
            subject=organisation.ods_code,
            message=reason,
            data={"holds_released": released},
        )
    return released


def hold_go(*, organisation: Organisation, actor: User, reason: str = "") -> int:
    """The trust says go again for its next waves (a trust admin of that organisation)."""
    require_administer(actor, organisation)
    if not actor.is_trust_admin:
        raise PermissionDenied("The trust gives go again; the programme office overrides with a reason")
    return _release(
        organisation=organisation, actor=actor, kind=OrganisationHold.Release.GO, reason=reason.strip()
    )


def hold_override(*, organisation: Organisation, actor: User, reason: str) -> int:
    """The programme office lets the organisation's next waves go ahead without its go, with a reason."""
    require_programme_office(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Give a reason for overriding the hold"})
    return _release(
        organisation=organisation, actor=actor, kind=OrganisationHold.Release.OVERRIDE, reason=reason
    )
