"""Failure triage across organisations: failed mailboxes grouped by error code, the mailboxes behind one code,
"retry these" per code for the programme office (services.failures.failures_retry, set-based, the same service
as the API's POST /api/v1/failures/retry), and the CSV of the failures."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from migrations_app.models import Mailbox
from migrations_app.selectors.progress import failures_by_code
from migrations_app.selectors.scoping import mailboxes_visible_to
from migrations_app.services.failures import failures_retry
from migrations_app.views._csv import csv_response
from migrations_app.views.mailboxes import MAILBOX_CSV_HEADER, mailbox_csv_rows

NAV = "failures"
SHOWN = 100


def _failed(request, code: str = ""):
    failed = mailboxes_visible_to(request.user).filter(state=Mailbox.State.FAILED)
    return failed.filter(last_error_code=code) if code else failed


@login_required
def failure_list(request):
    code = (request.GET.get("code") or "").strip()
    context = {
        "nav": NAV,
        "groups": failures_by_code(request.user),
        "code": code,
        "mailboxes": list(
            _failed(request, code).select_related("organisation", "wave").order_by("id")[:SHOWN]
        )
        if code
        else [],
        "shown": SHOWN,
        "can_retry": request.user.is_programme_office,
    }
    return render(request, "failures/list.html", context)


@login_required
def failure_csv(request):
    code = (request.GET.get("code") or "").strip()
    return csv_response(
        "failures.csv", MAILBOX_CSV_HEADER, mailbox_csv_rows(_failed(request, code).order_by("id"))
    )


@login_required
@require_POST
def failure_retry(request):
    """Retry every failed mailbox with this code, in every wave (once the cause is fixed)."""
    code = (request.POST.get("code") or "").strip()
    reason = (request.POST.get("reason") or "").strip()[:2000]
    retried = failures_retry(actor=request.user, code=code, reason=reason)
    messages.success(request, f"{retried:,} mailbox(es) with {code or 'no code'} will be retried")
    return redirect("failure_list")
