"""Support and the gate on the pages: the organisation page's part (support rate, hold, bad addresses,
requests, the paragraph for its staff's notifications, a ticket upload), the list of support requests, and
the buttons that release a hold (the trust's go, the programme office's override)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from migrations_app.models import Notification, OrganisationHold, OrganisationNotice, SupportRequest, Wave
from migrations_app.selectors.progress import OrganisationCounters
from migrations_app.selectors.scoping import (
    can_administer,
    organisations_administered_by,
    organisations_visible_to,
    support_requests_visible_to,
)
from migrations_app.selectors.support import organisation_support
from migrations_app.services.gate import hold_go, hold_override
from migrations_app.services.notifications.templates import organisation_notice_set
from migrations_app.services.support import support_tickets_import, tickets_from_csv
from migrations_app.views._helpers import paginate


def organisation_support_context(user, organisation, counters: OrganisationCounters | None = None) -> dict:
    """What the organisation page shows of notifications and support (both sides see the hold's reason)."""
    may_administer = can_administer(user, organisation)
    return {
        "support": organisation_support(organisation=organisation, counters=counters),
        "holds": list(OrganisationHold.objects.filter(organisation=organisation, released_at__isnull=True)),
        "bad_addresses": list(
            Notification.objects.filter(
                organisation_id=organisation.pk, status=Notification.Status.PERMANENT_FAILURE
            ).order_by("-id")[:50]
        ),
        **_digests(organisation),
        "support_requests": list(support_requests_visible_to(user).filter(organisation=organisation)[:20]),
        "notice": OrganisationNotice.objects.filter(organisation=organisation)
        .values_list("paragraph", flat=True)
        .first()
        or "",
        "can_support_admin": may_administer,
        "can_go_again": may_administer and user.is_trust_admin,
        "can_override": user.is_programme_office,
    }


def _digests(organisation) -> dict:
    """The digests its contacts were sent (or are waiting for), newest first, with their waves' names."""
    digests = list(
        Notification.objects.filter(organisation_id=organisation.pk, mailbox__isnull=True).order_by("-id")[
            :30
        ]
    )
    waves = Wave.objects.only("name").in_bulk({d.wave_id for d in digests if d.wave_id})
    for digest in digests:
        digest.wave_name = waves[digest.wave_id].name if digest.wave_id in waves else ""
    return {"digests": digests}


def _administered(request, ods_code: str):
    return get_object_or_404(organisations_administered_by(request.user), ods_code=ods_code.upper())


def _back(organisation):
    return redirect("organisation_detail", ods_code=organisation.ods_code)


@login_required
@require_POST
def hold_go_view(request, ods_code: str):
    organisation = _administered(request, ods_code)
    try:
        hold_go(organisation=organisation, actor=request.user, reason=request.POST.get("reason", "")[:2000])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request, f"{organisation.ods_code} has said go again: its next waves can be approved"
        )
    return _back(organisation)


@login_required
@require_POST
def hold_override_view(request, ods_code: str):
    organisation = _administered(request, ods_code)
    try:
        hold_override(
            organisation=organisation, actor=request.user, reason=request.POST.get("reason", "")[:2000]
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"The hold on {organisation.ods_code} is overridden")
    return _back(organisation)


@login_required
@require_POST
def notice_view(request, ods_code: str):
    organisation = _administered(request, ods_code)
    try:
        organisation_notice_set(
            organisation=organisation, actor=request.user, paragraph=request.POST.get("paragraph", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Saved: your paragraph is added to your staff's notifications")
    return _back(organisation)


@login_required
@require_POST
def tickets_upload_view(request, ods_code: str):
    organisation = _administered(request, ods_code)
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise ValidationError("Choose a CSV file of tickets")
        if upload.size > 20 * 1024 * 1024:
            raise ValidationError("The file is over 20 MB: split it")
        result = support_tickets_import(
            organisation=organisation,
            actor=request.user,
            rows=tickets_from_csv(upload.read()),
            source=SupportRequest.Source.CSV,
        )
    except ValidationError as exc:
        details = [f"line {e['line']}, {e['column']}: {e['message']}" for e in getattr(exc, "rows", [])[:10]]
        messages.error(request, " ".join(exc.messages) + (": " + "; ".join(details) if details else ""))
    else:
        messages.success(
            request, f"Imported {result.created} new ticket(s); {result.already_known} were already imported"
        )
    return _back(organisation)


@login_required
def support_list(request):
    """Support requests and tickets the user may see (their own organisations, or all for the programme office)."""
    requests = support_requests_visible_to(request.user).select_related("organisation")
    ods = (request.GET.get("organisation") or "").upper()
    if ods:
        requests = requests.filter(
            organisation__in=organisations_visible_to(request.user).filter(ods_code=ods)
        )
    page, pagination = paginate(request, requests.order_by("-opened_at", "-id"))
    return render(
        request, "support/list.html", {"nav": "support", "page": page, "pagination": pagination, "ods": ods}
    )


def wave_support_context(user, wave) -> dict:
    """The wave page's support rate and categories (a trust admin sees only their own organisations' rows)
    and the organisations of the wave that are on hold."""
    from migrations_app.selectors.scoping import _own_organisation_ids
    from migrations_app.selectors.support import wave_support
    from migrations_app.selectors.waves import wave_organisation_ids

    own = None if (user.is_programme_office or user.is_viewer) else _own_organisation_ids(user)
    org_ids = wave_organisation_ids(wave)
    held = OrganisationHold.objects.filter(
        organisation_id__in=org_ids if own is None else [i for i in org_ids if i in own],
        released_at__isnull=True,
    ).select_related("organisation")
    return {"wave_support": wave_support(wave=wave, organisation_ids=own), "wave_holds": list(held)}


def mailbox_notifications_context(mailbox) -> dict:
    return {"notifications": list(Notification.objects.filter(mailbox=mailbox).order_by("id")[:50])}
