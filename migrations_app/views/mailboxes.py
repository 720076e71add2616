"""Mailbox pages: search by address or display-name prefix, one mailbox with its timeline, skipped items and
last error, its actions (retry, roll back, pause, resume, cancel, switch: services.execution; retire and bring
back: services.readiness.leavers), each button one line through _act, and the CSV of search results.

A mailbox outside the user's scope is a 404 (its existence is not revealed); an action the user may not take
on one they can see is a 403 (the services check require_administer)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from migrations_app.engines import EngineError
from migrations_app.models import Event, Mailbox

# the rows live beside the background exports' (selectors/exports.py); other views import them from here too
from migrations_app.selectors.exports import MAILBOX_CSV_HEADER, mailbox_csv_rows  # noqa: E402, I001
from migrations_app.selectors.mailbox_settings import mailbox_settings
from migrations_app.selectors.mailboxes import (
    mailbox_class_progress,
    mailbox_search,
    mailbox_search_all,
    mailbox_skipped_items,
)
from migrations_app.selectors.scoping import can_administer, events_visible_to, mailboxes_visible_to
from migrations_app.selectors.waves import wave_of_mailbox
from migrations_app.services.execution import (
    CANCELLABLE,
    PAUSABLE,
    RETRYABLE,
    ROLLBACKABLE,
    mailbox_cancel,
    mailbox_pause,
    mailbox_resume,
    mailbox_retry,
    mailbox_rollback,
    mailbox_switch_confirm,
    mailbox_unswitch,
)
from migrations_app.services.execution.switch import MANUAL_CHECKLIST, switch_target
from migrations_app.services.readiness.codes import blocked_reason
from migrations_app.services.readiness.leavers import RETIRABLE, mailbox_reinstate, mailbox_retire
from migrations_app.views._csv import csv_response
from migrations_app.views.support import mailbox_notifications_context

NAV = "mailboxes"


@login_required
def mailbox_search_view(request):
    query = (request.GET.get("q") or "").strip()
    results = mailbox_search(mailboxes_visible_to(request.user), query) if query else []
    context = {"nav": NAV, "query": query, "results": results, "searched": bool(query)}
    template = "mailboxes/_results.html" if request.htmx else "mailboxes/search.html"
    return render(request, template, context)


@login_required
def mailbox_search_csv(request):
    query = (request.GET.get("q") or "").strip()
    mailboxes = mailbox_search_all(mailboxes_visible_to(request.user), query)
    return csv_response("mailbox-search.csv", MAILBOX_CSV_HEADER, mailbox_csv_rows(mailboxes))


def _visible_mailbox(request, pk: int) -> Mailbox:
    return get_object_or_404(mailboxes_visible_to(request.user).select_related("organisation", "wave"), pk=pk)


@login_required
def mailbox_detail(request, pk: int):
    mailbox = _visible_mailbox(request, pk)
    may_act = can_administer(request.user, mailbox.organisation)
    context = {
        "nav": NAV,
        "mailbox": mailbox,
        "wave": wave_of_mailbox(mailbox),
        "events": list(
            events_visible_to(request.user).filter(mailbox_id=mailbox.pk).select_related("actor")[:200]
        ),
        "skipped": mailbox_skipped_items(mailbox),
        # every copy a worker started, over the mailbox's life: counts up (mailbox.attempts is the retry budget
        # of the current round, which a person's retry resets, so it went down on the page)
        "copy_attempts": Event.objects.filter(mailbox_id=mailbox.pk, action="mailbox.claimed").count(),
        "class_progress": mailbox_class_progress(mailbox),
        "settings_report": mailbox_settings(mailbox),
        "preflight": mailbox.preflight_report,
        "can_retry": may_act and mailbox.state in RETRYABLE,
        "can_rollback": may_act and mailbox.state in ROLLBACKABLE,
        "can_cancel": may_act and mailbox.wave_id is not None and mailbox.state in CANCELLABLE,
        "can_pause": may_act and not mailbox.paused and mailbox.state in PAUSABLE,
        "can_resume": may_act and mailbox.paused,
        "can_retire": may_act and mailbox.state in RETIRABLE,
        "can_reinstate": may_act and mailbox.state == Mailbox.State.RETIRED,
        "blocked": blocked_reason(mailbox.blocked_code) if mailbox.state == Mailbox.State.BLOCKED else None,
        **_switch_context(request, mailbox, may_act),
        **mailbox_notifications_context(mailbox),
    }
    return render(request, "mailboxes/detail.html", context)


def _switch_context(request, mailbox: Mailbox, may_act: bool) -> dict:
    """Where the mailbox's mail goes, how its source switches it, and what a person may do about it."""
    S = Mailbox.SwitchStatus
    endpoint = mailbox.wave.source_endpoint if mailbox.wave_id else None
    method = endpoint.get_switch_method_display() if endpoint is not None else "Simulated"
    try:
        routing = switch_target(mailbox, endpoint).routing_address if mailbox.wave_id else ""
    except EngineError:  # no routing domain: the page says so instead
        routing = ""
    waiting = mailbox.state == Mailbox.State.SWITCHING or mailbox.switch_status == S.UNSWITCHING
    return {
        "switch_method": method,
        "switch_manual": endpoint is not None and endpoint.switch_method == "manual",
        "routing_address": routing,
        "switch_checklist": MANUAL_CHECKLIST,
        "can_confirm_switch": may_act and waiting,
        "can_unswitch": request.user.is_programme_office
        and mailbox.switch_status in (S.REQUESTED, S.SWITCHED)
        and mailbox.state in ROLLBACKABLE,
    }


def _act(request, pk: int, service, done: str):
    mailbox = _visible_mailbox(request, pk)
    reason = (request.POST.get("reason") or "").strip()[:2000]
    try:
        service(mailbox=mailbox, actor=request.user, reason=reason)
    except ValidationError as exc:  # PermissionDenied propagates: a 403
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{mailbox.email} {done}")
    return redirect("mailbox_detail", pk=mailbox.pk)


@login_required
@require_POST
def mailbox_retry_view(request, pk: int):
    return _act(request, pk, mailbox_retry, "will be retried")


@login_required
@require_POST
def mailbox_rollback_view(request, pk: int):
    return _act(request, pk, mailbox_rollback, "is rolled back out of its wave and ready again")


@login_required
@require_POST
def mailbox_pause_view(request, pk: int):
    return _act(request, pk, mailbox_pause, "is paused: a copy in progress stops at its next checkpoint")


@login_required
@require_POST
def mailbox_resume_view(request, pk: int):
    return _act(request, pk, mailbox_resume, "is resumed: it is copied with its wave's next free slot")


@login_required
@require_POST
def mailbox_cancel_view(request, pk: int):
    return _act(request, pk, mailbox_cancel, "is taken out of its wave and ready to plan again")


@login_required
@require_POST
def mailbox_switch_confirm_view(request, pk: int):
    return _act(request, pk, mailbox_switch_confirm, "is confirmed: its mail goes where it was asked to")


@login_required
@require_POST
def mailbox_unswitch_view(request, pk: int):
    return _act(request, pk, mailbox_unswitch, "is being switched back: its mail goes to the source again")


@login_required
@require_POST
def mailbox_retire_view(request, pk: int):
    return _act(request, pk, mailbox_retire, "is retired: kept with its history, never planned")


@login_required
@require_POST
def mailbox_reinstate_view(request, pk: int):
    return _act(
        request, pk, mailbox_reinstate, "is back in the inventory: check it again before it is planned"
    )
