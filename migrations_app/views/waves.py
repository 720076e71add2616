"""Wave pages: the timeline, one wave with its organisations, capacity and decisions, the actions (htmx, with a
confirmation step for destructive ones), moves, the planner with its preview, pilot waves.

Every action calls one service (services.waves, services.plans, services.wave_moves, services.pilots, services.programme), the same ones the API calls. Scoping
through the selectors: a wave outside the user's scope is a 404; a forbidden action is a 403."""

import datetime as dt
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseNotModified
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from migrations_app.models import Mailbox, Organisation, User, Wave
from migrations_app.planning.calendar import LONDON
from migrations_app.request_limits import id_parameter
from migrations_app.selectors.progress import wave_progress, wave_progress_etag, wave_progress_shared
from migrations_app.selectors.scoping import (
    can_administer,
    mailboxes_visible_to,
    organisations_visible_to,
    require_planner,
    scope_key,
)
from migrations_app.selectors.shared import kept_shared
from migrations_app.selectors.waves import (
    decisions_visible_to,
    wave_members,
    wave_organisation_rows,
    wave_organisation_totals,
    wave_totals_seen_by,
    waves_by_week,
    waves_visible_to,
)
from migrations_app.services.execution import wave_retry_failures
from migrations_app.services.wave_moves import (
    MOVABLE_INTO,
    wave_move_mailbox,
    wave_move_organisation,
    wave_place_carried_over,
)
from migrations_app.services.waves import ACTIONS, four_eyes_refusal, wave_act
from migrations_app.views._csv import CHUNK_SIZE, csv_response
from migrations_app.views._helpers import error_summary_items, paginate
from migrations_app.views.mailboxes import MAILBOX_CSV_HEADER, mailbox_csv_rows
from migrations_app.views.support import wave_support_context

NAV = "waves"
S = Wave.Status


# --- forms (small, and only these pages use them) ----------------------------------------------------------------


class WaveFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *S.choices], required=False)
    kind = forms.ChoiceField(label="Window", choices=[("", "Any window"), *Wave.Kind.choices], required=False)


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason", widget=forms.Textarea, required=False, max_length=2000)


# --- helpers ---------------------------------------------------------------------------------------------------


def _visible_wave(request, pk: int) -> Wave:
    return get_object_or_404(
        waves_visible_to(request.user).select_related("proposed_by", "approved_by"), pk=pk
    )


ACTION_LABELS = {
    "propose": (
        "Propose for approval",
        "Send this wave to the organisations for go / no-go and to an approver.",
    ),
    "approve": ("Approve", "Approve the wave: its mailboxes are scheduled and the wave is frozen."),
    "reject": ("Reject", "Send the wave back to draft. Say why, so the planners can fix it."),
    "pause": ("Pause", "Stop starting new moves in this wave until it is resumed."),
    "resume": ("Resume", "Carry on with the wave."),
    "cancel": ("Cancel wave", "Cancel the wave: its mailboxes go back to ready for another wave."),
    "go": ("Go", "This organisation agrees to move in this wave."),
    "no-go": (
        "No-go",
        "This organisation cannot move in this wave: it leaves the wave and its mailboxes are "
        "ready again for another one.",
    ),
}
WAVE_ACTIONS_BY_STATUS = {
    S.DRAFT: ["propose", "cancel"],
    S.PROPOSED: ["approve", "reject", "cancel"],
    S.APPROVED: ["pause", "cancel"],
    S.RUNNING: ["pause"],
    S.PAUSED: ["resume", "cancel"],
}


# Asked before acting although the service needs no reason.
CONFIRM_FIRST = ("propose",)
# What happened, said after the action (format with the wave's name and the organisation's code).
DONE = {
    "propose": "{wave} is proposed: its organisations can now say go or no-go, and another member of the "
    "programme office can approve it once they have.",
    "go": "{org} said go for {wave}.",
    "no-go": "{org} said no-go: it has left {wave} and its mailboxes are ready for another wave.",
    "approve": "{wave} is approved: its mailboxes are scheduled and the wave is frozen.",
}


def _wave_actions(wave: Wave, user: User) -> list[dict]:
    """The wave-wide actions this user may take now (programme office only)."""
    if not user.is_programme_office:
        return []
    actions = []
    for name in WAVE_ACTIONS_BY_STATUS.get(wave.status, []):
        _, _, needs_reason, destructive = ACTIONS[name]
        # propose asks first too: it sends the wave to every organisation in it for go / no-go
        actions.append(
            {
                "name": name,
                "label": ACTION_LABELS[name][0],
                "confirm": needs_reason or destructive or name in CONFIRM_FIRST,
            }
        )
    return actions


def _panel_context(request, wave: Wave, *, error: str = "", notice: str = "") -> dict:
    user = request.user
    # one pass over the members (at most a window's worth) serves the totals and the organisation rows
    by_org = wave_organisation_totals(wave)
    rows = wave_organisation_rows(wave, user, by_org)
    # a shared wave's totals are the whole wave for the programme office, a trust's own share for a trust
    counted = by_org.values() if user.is_programme_office else [(r["mailboxes"], r["bytes"]) for r in rows]
    totals = {"mailboxes": sum(n for n, _ in counted), "bytes": sum(b for _, b in counted)}
    can_answer = wave.status in (S.PROPOSED, S.APPROVED)
    for row in rows:
        row["can_answer"] = can_answer and not user.is_viewer and can_administer(user, row["organisation"])
        row["go_on_behalf"] = user.is_programme_office  # a reason first: who confirmed it, and how
    return {
        "wave": wave,
        "totals": totals,
        "mailbox_percent": min(100, round(100 * totals["mailboxes"] / wave.capacity_mailboxes))
        if wave.capacity_mailboxes
        else 0,
        "bytes_percent": min(100, round(100 * totals["bytes"] / wave.capacity_bytes))
        if wave.capacity_bytes
        else 0,
        "over_capacity": totals["mailboxes"] > wave.capacity_mailboxes
        or totals["bytes"] > wave.capacity_bytes,
        "organisation_rows": rows,
        "decisions": list(
            decisions_visible_to(user)
            .filter(wave=wave)
            .select_related("actor", "organisation")
            .order_by("-id")[:100]
        ),
        "actions": _wave_actions(wave, user),
        "four_eyes_blocks": wave.status == S.PROPOSED and four_eyes_refusal(wave, user) is not None,
        "four_eyes_reason": four_eyes_refusal(wave, user) if wave.status == S.PROPOSED else None,
        "awaiting": sum(1 for r in rows if r["response"] != "go") if wave.status == S.PROPOSED else 0,
        "error": error,
        "notice": notice,
    }


# --- pages -----------------------------------------------------------------------------------------------------


@login_required
def wave_list(request):
    filters = WaveFilterForm(request.GET or None)
    waves = waves_visible_to(request.user).order_by("starts_at", "id")
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            waves = waves.filter(status=filters.cleaned_data["status"])
        if filters.cleaned_data["kind"]:
            waves = waves.filter(kind=filters.cleaned_data["kind"])
    if "from" not in request.GET and not request.GET.get("page") and not request.GET.get("status"):
        # open on this week, not on the programme's first wave
        today = dt.datetime.now(LONDON).date()
        monday = today - dt.timedelta(days=today.weekday())
        upcoming = waves.filter(ends_at__gte=dt.datetime.combine(monday, dt.time(), tzinfo=LONDON))
        if upcoming.exists():
            waves = upcoming
    page, pagination = paginate(request, waves, per_page=60)
    if not request.user.is_programme_office:
        for wave in page.object_list:  # their own share of shared waves (one GROUP BY per wave on the page)
            wave.planned_mailboxes, wave.planned_bytes = wave_totals_seen_by(wave, request.user)
    context = {
        "nav": NAV,
        "filters": filters,
        "weeks": waves_by_week(page.object_list),
        "page": page,
        "pagination": pagination,
        "can_plan": request.user.is_programme_office,
    }
    return render(request, "waves/list.html", context)


def _live_context(request, wave: Wave) -> dict:
    return {
        "wave": wave,
        "progress": wave_progress(wave, request.user),
        "can_retry": request.user.is_programme_office,
    }


@login_required
def wave_detail(request, pk: int):
    wave = _visible_wave(request, pk)
    context = {"nav": NAV, **_panel_context(request, wave), **_live_context(request, wave)}
    if request.user.is_programme_office and wave.status in MOVABLE_INTO:
        context["move_targets"] = _other_movable_waves(wave)
    if wave.status in (Wave.Status.RUNNING, Wave.Status.COMPLETED, Wave.Status.CANCELLED):
        # one pass over the wave's rows (a window's worth at most), scoped to what the user may see
        context["carried_over"] = (
            mailboxes_visible_to(request.user).filter(wave=wave, carried_over=True).count()
        )
        if context["carried_over"] and request.user.is_programme_office:
            context["place_targets"] = _other_movable_waves(wave)
    context.update(wave_support_context(request.user, wave))
    return render(request, "waves/detail.html", context)


def _done(action: str, wave: Wave, organisation: Organisation | None) -> str:
    label = ACTION_LABELS[action][0]
    template = DONE.get(action)
    if template is None:
        return f"{label}: {wave.name}" + (f" for {organisation.ods_code}" if organisation else "")
    return template.format(wave=wave.name, org=organisation.ods_code if organisation else "")


def _other_movable_waves(wave: Wave) -> list[Wave]:
    """The waves that can still take mailboxes (draft, proposed, approved), for a move or placement form."""
    return list(Wave.objects.filter(status__in=MOVABLE_INTO).exclude(pk=wave.pk).order_by("starts_at")[:200])


@login_required
@require_POST
def wave_place_carried_over_view(request, pk: int):
    """Place the wave's carried-over mailboxes in another wave (programme office), asking first when the
    target would go over its capacity or meets a blackout or a preference."""
    source = _visible_wave(request, pk)
    require_planner(request.user)
    target = get_object_or_404(Wave, pk=id_parameter(request.POST.get("target"), "target"))
    try:
        result = wave_place_carried_over(
            actor=request.user, source=source, target=target, confirm=request.POST.get("confirm") == "1"
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("wave_detail", pk=source.pk)
    return _move_outcome(request, result, source=source, target=target, carried_over=True)


@login_required
@require_http_methods(["GET", "POST"])
def wave_action(request, pk: int, action: str):
    """GET: the confirmation step (a reason box) for destructive actions. POST: do it."""
    if action not in ACTIONS:
        raise PermissionDenied("Unknown action")
    wave = _visible_wave(request, pk)
    organisation = None
    code = (request.POST.get("organisation") or request.GET.get("organisation") or "").upper()
    if code:
        organisation = get_object_or_404(organisations_visible_to(request.user), ods_code=code)
    _, needs_org, needs_reason, destructive = ACTIONS[action]
    if action == "go" and request.user.is_programme_office:
        needs_reason = True  # on the organisation's behalf: say who confirmed it, and how
    destructive = destructive or action in CONFIRM_FIRST
    label, explanation = ACTION_LABELS[action]
    # never offer a confirmation the service would refuse (a viewer was shown "Yes, pause" first)
    if needs_org and organisation is not None and not can_administer(request.user, organisation):
        raise PermissionDenied(f"Only {organisation.name}'s admins can say go or no-go for it")
    if not needs_org and not request.user.is_programme_office:
        raise PermissionDenied("Only the programme office can do this to a wave")
    form = ReasonForm(request.POST or None)

    def confirmation(**extra):
        """The confirmation step (a fragment for htmx, a page otherwise), before acting or after a refusal."""
        context = {
            "nav": NAV,
            "wave": wave,
            "action": action,
            "label": label,
            "explanation": explanation,
            "organisation": organisation,
            "form": form,
            "needs_reason": needs_reason,
            **extra,
        }
        template = "waves/_confirm.html" if request.htmx else "waves/confirm.html"
        status = 400 if extra.get("errors") and not request.htmx else 200
        return render(request, template, context, status=status)

    if request.method == "GET" or (
        request.method == "POST" and "confirmed" not in request.POST and (needs_reason or destructive)
    ):
        return confirmation()
    reason = form.cleaned_data.get("reason", "") if form.is_valid() else ""
    error = ""
    try:
        wave_act(wave=wave, action=action, actor=request.user, reason=reason, organisation=organisation)
    except ValidationError as exc:
        if hasattr(exc, "error_dict") and "reason" in exc.error_dict:
            form.add_error("reason", " ".join(exc.message_dict["reason"]))
            return confirmation(errors=error_summary_items(form))
        error = " ".join(exc.messages)
    # the service may have refreshed our copy before refusing: read the wave as it is now
    wave = Wave.objects.select_related("proposed_by", "approved_by").get(pk=wave.pk)
    if request.htmx:
        # htmx swaps only 2xx answers: the panel carries the error banner instead
        notice = "" if error else _done(action, wave, organisation)
        response = render(
            request, "waves/_panel.html", _panel_context(request, wave, error=error, notice=notice)
        )
        response["HX-Trigger"] = "wave-changed"  # the live part reloads itself (and polls if now live)
        return response
    if error:
        messages.error(request, error)
    else:
        messages.success(request, _done(action, wave, organisation))
    return redirect("wave_detail", pk=wave.pk)


@login_required
@require_POST
def wave_move(request, pk: int):
    """Move an organisation out of this wave into another; warnings first, then 'move anyway'."""
    source = _visible_wave(request, pk)
    require_planner(request.user)
    organisation = get_object_or_404(Organisation, ods_code=(request.POST.get("organisation") or "").upper())
    target = get_object_or_404(Wave, pk=id_parameter(request.POST.get("target"), "target"))
    try:
        result = wave_move_organisation(
            actor=request.user,
            organisation=organisation,
            source=source,
            target=target,
            confirm=request.POST.get("confirm") == "1",
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("wave_detail", pk=source.pk)
    return _move_outcome(request, result, source=source, target=target, organisation=organisation)


@login_required
@require_POST
def wave_move_mailbox_view(request, pk: int):
    source = _visible_wave(request, pk)
    require_planner(request.user)
    email = (request.POST.get("email") or "").strip().lower()
    mailbox = (
        Mailbox.objects.filter(pk__in=mailboxes_visible_to(request.user).filter(email=email).values("pk"))
        .select_related("organisation")
        .first()
    )
    target = get_object_or_404(Wave, pk=id_parameter(request.POST.get("target"), "target"))
    if mailbox is None:
        messages.error(request, f"No mailbox {email}")
        return redirect("wave_detail", pk=source.pk)
    try:
        result = wave_move_mailbox(
            actor=request.user, mailbox=mailbox, target=target, confirm=request.POST.get("confirm") == "1"
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("wave_detail", pk=source.pk)
    return _move_outcome(request, result, source=source, target=target, mailbox=mailbox)


def _move_outcome(
    request, result, *, source: Wave, target: Wave, organisation=None, mailbox=None, carried_over=False
):
    """Either side of a move: ask to confirm its warnings, or say it moved (warnings kept as messages)."""
    if not result.moved:
        context = {
            "nav": NAV,
            "wave": source,
            "target": target,
            "organisation": organisation,
            "mailbox": mailbox,
            "carried_over": carried_over,
            "warnings": result.warnings,
        }
        return render(request, "waves/move_confirm.html", context)
    if carried_over:
        moved = f"The mailboxes {source.name} carried over are"
    else:
        moved = organisation.ods_code if organisation is not None else mailbox.email
    messages.success(request, f"{moved} moved to {target.name}")
    for warning in result.warnings:
        messages.warning(request, warning)
    return redirect("wave_detail", pk=target.pk)


# --- live progress, failures, export ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveAnswer:
    """The live fragment as it was answered: its HTML, its validator, and whether the wave can still move."""

    body: bytes
    etag: str
    live: bool


def _live_answer(
    request, wave: Wave, progress: dict, *, can_retry: bool, if_none_match: str = ""
) -> LiveAnswer:
    """The fragment for this user now; not rendered when the browser already holds it (if_none_match)."""
    etag = wave_progress_etag(wave, progress, can_retry=can_retry)
    if progress["live"] and etag in if_none_match:
        return LiveAnswer(b"", etag, True)
    context = {"wave": wave, "progress": progress, "can_retry": can_retry}
    return LiveAnswer(render(request, "waves/_live.html", context).content, etag, progress["live"])


@login_required
def wave_live(request, pk: int):
    """The live part of the wave page, polled by htmx every few seconds while the wave can still move; once it
    cannot (completed, cancelled, ...), the last answer is a 286 so htmx stops polling.

    Thousands of trust admins poll their waves every 3 s. Without the programme office's buttons the fragment
    is the same for everyone who sees the same organisations, so the whole answer (the HTML and its ETag) is
    shared in the cache for WAVE_LIVE_CACHE_SECONDS (1 s) under the wave and that set of organisations (a set
    that cannot see the wave gets its 404 before anything is kept); the browser asks with If-None-Match, and
    an unchanged poll is a 304. The programme office's fragment carries its forms' CSRF token: never shared
    whole, only its figures (wave_progress_shared)."""
    user = request.user
    can_retry = user.is_programme_office
    if_none_match = request.headers.get("If-None-Match", "")
    seconds = settings.WAVE_LIVE_CACHE_SECONDS
    if can_retry or seconds <= 0:
        wave = _visible_wave(request, pk)
        progress = wave_progress_shared(wave, user)
        answer = _live_answer(request, wave, progress, can_retry=can_retry, if_none_match=if_none_match)
    else:

        def fresh() -> LiveAnswer:
            wave = _visible_wave(request, pk)
            return _live_answer(request, wave, wave_progress(wave, user), can_retry=False)

        answer = kept_shared(f"wave-live-answer:{pk}:{scope_key(user)}", seconds, fresh)
    if not answer.live:
        return HttpResponseStopPolling(answer.body)
    response = HttpResponseNotModified() if answer.etag in if_none_match else HttpResponse(answer.body)
    response["ETag"] = answer.etag
    response["Cache-Control"] = "private, no-cache"
    return response


@login_required
@require_POST
def wave_retry_failures_view(request, pk: int):
    wave = _visible_wave(request, pk)
    code = (request.POST.get("code") or "").strip()
    retried = wave_retry_failures(
        wave=wave, actor=request.user, code=code, reason=request.POST.get("reason", "")
    )
    done = f"{retried:,} mailbox(es) with {code or 'no code'} queued to be retried now"
    if request.htmx:
        # the live part again, now showing them scheduled (and the wave running again if it had completed)
        wave.refresh_from_db()
        context = {**_live_context(request, wave), "retried": done}
        return render(request, "waves/_live.html", context)
    messages.success(request, done)
    return redirect("wave_detail", pk=wave.pk)


@login_required
def wave_mailboxes_csv(request, pk: int):
    wave = _visible_wave(request, pk)
    mailboxes = wave_members(wave).filter(
        organisation_id__in=organisations_visible_to(request.user).values("pk")
    )
    state = request.GET.get("state", "")
    if state in Mailbox.State.values:
        mailboxes = mailboxes.filter(state=state)
    return csv_response(
        f"wave-{wave.pk}-mailboxes.csv", MAILBOX_CSV_HEADER, mailbox_csv_rows(mailboxes.order_by("id"))
    )


@login_required
def wave_list_csv(request):
    """Every wave the user sees, with the list page's filters."""
    filters = WaveFilterForm(request.GET or None)
    waves = waves_visible_to(request.user).order_by("starts_at", "id")
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            waves = waves.filter(status=filters.cleaned_data["status"])
        if filters.cleaned_data["kind"]:
            waves = waves.filter(kind=filters.cleaned_data["kind"])

    def rows():
        for w in waves.iterator(chunk_size=CHUNK_SIZE):
            if not request.user.is_programme_office:
                w.planned_mailboxes, w.planned_bytes = wave_totals_seen_by(w, request.user)
            yield [
                w.name,
                w.get_kind_display(),
                "yes" if w.is_pilot else "",
                w.starts_at.isoformat(),
                w.ends_at.isoformat(),
                w.get_status_display(),
                w.planned_mailboxes,
                w.planned_bytes,
                w.capacity_mailboxes,
                w.capacity_bytes,
            ]

    header = [
        "name",
        "window",
        "pilot",
        "starts_at",
        "ends_at",
        "status",
        "planned_mailboxes",
        "planned_bytes",
        "capacity_mailboxes",
        "capacity_bytes",
    ]
    return csv_response("waves.csv", header, rows())
