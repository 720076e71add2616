"""Readiness on the pages: run an organisation's readiness check and watch it (polled, pretix-style), its blocked
mailboxes by reason with a filter and a CSV, closing an organisation (retiring and bringing back a mailbox are
mailbox actions: views/mailboxes.py). Every action calls the same service as the API (services.readiness)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from migrations_app.models import Mailbox, Organisation, ReadinessCheck
from migrations_app.selectors.progress import OrganisationCounters, organisation_counters
from migrations_app.selectors.readiness import blocked_by_reason, gate_labels, last_check, required_gates
from migrations_app.selectors.scoping import (
    can_administer,
    organisations_visible_to,
    readiness_checks_visible_to,
)
from migrations_app.services.readiness.checks import readiness_check_start
from migrations_app.services.readiness.codes import blocked_reason
from migrations_app.services.readiness.stages import ENTRY, organisation_close
from migrations_app.views._csv import CHUNK_SIZE, csv_response

BLOCKED_PER_PAGE = 50
BLOCKED_CSV_HEADER = [
    "email",
    "display_name",
    "ods_code",
    "blocked_code",
    "why",
    "what_to_do",
    "engine_said",
    "checked_at",
]


def _visible_organisation(request, ods_code: str) -> Organisation:
    return get_object_or_404(organisations_visible_to(request.user), ods_code=ods_code.upper())


def _blocked(organisation: Organisation, code: str):
    mailboxes = Mailbox.objects.filter(organisation=organisation, state=Mailbox.State.BLOCKED)
    if code:
        mailboxes = mailboxes.filter(blocked_code=code)
    return mailboxes.order_by("id")  # the (organisation, state, id) index


def readiness_context(
    request, organisation: Organisation, counters: OrganisationCounters | None = None
) -> dict:
    """The organisation page's readiness part: gates (required ones marked), the last check with its progress,
    blocked mailboxes by reason and the first page of them, filtered by reason."""
    required = required_gates()
    code = (request.GET.get("blocked_code") or "").strip().upper()
    # the counters say whether there is anything blocked; only then are the blocked rows read
    if counters is None:
        counters = organisation_counters(organisation)
    any_blocked = counters.any_in(Mailbox.State.BLOCKED)
    by_reason = blocked_by_reason([organisation.pk]) if any_blocked else []
    check = last_check(organisation)
    return {
        "required_gates": required,
        "missing_gate_labels": gate_labels(organisation.missing_gates(required)),
        "readiness_check": check,
        "readiness_running": check is not None and check.status in ("queued", "running"),
        "blocked_by_reason": by_reason,
        "blocked_code": code,
        "blocked_mailboxes": [
            (m, blocked_reason(m.blocked_code)) for m in _blocked(organisation, code)[:BLOCKED_PER_PAGE]
        ]
        if any_blocked
        else [],
        "can_check": can_administer(request.user, organisation),
        "can_close": request.user.is_programme_office
        and organisation.stage in ENTRY[Organisation.Stage.CLOSED],
    }


@login_required
@require_POST
def organisation_readiness_check_view(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    check = readiness_check_start(actor=request.user, organisation=organisation)  # PermissionDenied: 403
    messages.success(
        request, f"Readiness check started for {organisation.ods_code}: this page shows its progress."
    )
    return redirect(
        reverse("organisation_detail", args=[organisation.ods_code]) + f"?check={check.pk}#readiness"
    )


@login_required
def readiness_check_progress(request, pk: int):
    """Polled every 2 s while the check runs; once it has finished the page reloads to show the results."""
    check = get_object_or_404(readiness_checks_visible_to(request.user), pk=pk)
    if check.status not in (ReadinessCheck.Status.QUEUED, ReadinessCheck.Status.RUNNING) and request.htmx:
        return HttpResponseClientRefresh()
    return render(request, "organisations/_readiness_check.html", {"check": check})


@login_required
def organisation_blocked_csv(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    code = (request.GET.get("blocked_code") or "").strip().upper()

    def rows():
        for m in _blocked(organisation, code).iterator(chunk_size=CHUNK_SIZE):
            reason = blocked_reason(m.blocked_code)
            yield [
                m.email,
                m.display_name,
                organisation.ods_code,
                m.blocked_code,
                reason.title,
                reason.action,
                m.blocked_reason,
                m.checked_at.isoformat() if m.checked_at else "",
            ]

    return csv_response(f"{organisation.ods_code}-blocked.csv", BLOCKED_CSV_HEADER, rows())


@login_required
@require_POST
def organisation_close_view(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    try:
        organisation_close(
            organisation=organisation, actor=request.user, reason=request.POST.get("reason", "")
        )
    except ValidationError as exc:  # PermissionDenied propagates: a 403
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{organisation.ods_code} is closed.")
    return redirect("organisation_detail", ods_code=organisation.ods_code)
