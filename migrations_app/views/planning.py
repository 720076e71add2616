"""Planning pages for the programme office: the planner (preview, then commit), pilot waves, and the
programme's windows, rules and closed periods."""

import datetime as dt

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from migrations_app.forms import DatePartsField
from migrations_app.forms_settings import ProgrammeSettingsForm, next_windows
from migrations_app.models import ClosedPeriod, Organisation, ProgrammeSettings, Wave
from migrations_app.planning.calendar import LONDON
from migrations_app.selectors.scoping import (
    require_planner,
)
from migrations_app.selectors.waves import (
    plan_unplaced_rows,
)
from migrations_app.services.pilots import pilot_wave_create
from migrations_app.services.plans import plan_commit, plan_preview, wave_name
from migrations_app.services.programme import (
    closed_period_add,
    closed_period_remove,
    programme_settings_update,
)
from migrations_app.views._helpers import add_service_errors, error_summary_items
from migrations_app.views.waves import NAV


class PlannerForm(forms.Form):
    start = DatePartsField(label="Plan from", label_text="date to plan from")


class PilotForm(forms.Form):
    starts_on = DatePartsField(label="Window starts on", label_text="date the window starts")
    kind = forms.ChoiceField(label="Window", choices=Wave.Kind.choices, initial=Wave.Kind.EVENING)
    organisations = forms.CharField(
        label="Organisations (ODS codes)",
        widget=forms.Textarea,
        help_text="One or more ODS codes, separated by spaces, commas or new lines",
    )
    per_organisation = forms.IntegerField(label="Mailboxes per organisation", min_value=1, max_value=100)

    def clean_organisations(self):
        codes = sorted(
            {c.strip().upper() for c in self.cleaned_data["organisations"].replace(",", " ").split()}
        )
        found = list(Organisation.objects.filter(ods_code__in=codes))
        unknown = sorted(set(codes) - {o.ods_code for o in found})
        if unknown:
            raise forms.ValidationError(f"No organisation with ODS code {', '.join(unknown)}")
        return found


def _next_monday(today: dt.date | None = None) -> dt.date:
    today = today or dt.datetime.now(LONDON).date()
    return today + dt.timedelta(days=(7 - today.weekday()) % 7 or 7)


@login_required
def planner(request):
    """The planner: a start date, the preview (htmx), and a button that saves exactly what was previewed."""
    require_planner(request.user)
    form = PlannerForm(request.GET if "start_day" in request.GET else None, initial={"start": _next_monday()})
    plan = None
    if form.is_bound and form.is_valid():
        plan = plan_preview(start=form.cleaned_data["start"], actor=request.user)
    context = {
        "nav": NAV,
        "form": form,
        "errors": error_summary_items(form),
        "plan": plan,
        "plan_waves": [
            {
                "name": wave_name(w.window),
                "window": w.window,
                "mailboxes": w.mailboxes,
                "bytes": w.bytes,
                "organisations": w.organisations,
                "percent": round(100 * w.mailboxes / w.capacity_mailboxes) if w.capacity_mailboxes else 0,
                "capacity_mailboxes": w.capacity_mailboxes,
            }
            for w in plan.waves
        ]
        if plan
        else [],
        "unplaced": plan_unplaced_rows(plan, limit=200) if plan else [],
        "pilot_form": PilotForm(
            initial={
                "per_organisation": ProgrammeSettings.load().pilot_mailboxes_per_organisation,
                "starts_on": _next_monday(),
            }
        ),
    }
    if request.htmx and plan is not None:
        return render(request, "waves/_preview.html", context)
    return render(request, "waves/planner.html", context)


@login_required
@require_POST
def planner_commit_view(request):
    require_planner(request.user)
    try:
        start = dt.date.fromisoformat(request.POST.get("start", ""))
    except ValueError:
        messages.error(request, "Preview a plan first")
        return redirect("wave_planner")
    try:
        plan, waves = plan_commit(
            start=start, actor=request.user, expected_fingerprint=request.POST.get("fingerprint", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(
            f"{reverse('wave_planner')}?start_day={start.day}&start_month={start.month}&start_year={start.year}"
        )
    messages.success(
        request,
        f"Saved {len(waves)} draft waves for {plan.mailboxes:,} mailboxes"
        + (f"; {plan.unplaced_mailboxes:,} could not be placed" if plan.unplaced else ""),
    )
    return redirect("wave_list")


@login_required
@require_POST
def pilot_create_view(request):
    require_planner(request.user)
    form = PilotForm(request.POST)
    if form.is_valid():
        try:
            wave = pilot_wave_create(
                actor=request.user,
                starts_on=form.cleaned_data["starts_on"],
                kind=form.cleaned_data["kind"],
                organisations=form.cleaned_data["organisations"],
                per_organisation=form.cleaned_data["per_organisation"],
            )
        except ValidationError as exc:
            form.add_error(None, " ".join(exc.messages))
        else:
            messages.success(
                request, f"Pilot wave {wave.name} created with {wave.planned_mailboxes} mailboxes"
            )
            return redirect("wave_detail", pk=wave.pk)
    context = {
        "nav": NAV,
        "form": PlannerForm(initial={"start": _next_monday()}),
        "pilot_form": form,
        "errors": error_summary_items(form),
        "plan": None,
    }
    return render(request, "waves/planner.html", context, status=400)


class ClosedPeriodForm(forms.Form):
    kind = forms.ChoiceField(label="Kind", choices=ClosedPeriod.Kind.choices)
    name = forms.CharField(label="Name", max_length=200)
    starts_on = DatePartsField(label="First day", label_text="first day")
    ends_on = DatePartsField(label="Last day", label_text="last day")


@login_required
@require_http_methods(["GET", "POST"])
def programme_settings_view(request):
    require_planner(request.user)
    settings = ProgrammeSettings.load()
    form = ProgrammeSettingsForm(
        request.POST if request.method == "POST" and "closed-kind" not in request.POST else None,
        instance=settings,
        prefix="settings",
    )
    closed_form = (
        ClosedPeriodForm(request.POST or None, prefix="closed")
        if "closed-kind" in request.POST
        else ClosedPeriodForm(prefix="closed")
    )
    if request.method == "POST":
        if "closed-kind" in request.POST:
            if closed_form.is_valid():
                try:
                    closed_period_add(actor=request.user, **closed_form.cleaned_data)
                except ValidationError as exc:
                    add_service_errors(closed_form, exc)
                else:
                    messages.success(request, f"{closed_form.cleaned_data['name']} added")
                    return redirect("programme_settings")
        elif form.is_valid():
            try:
                programme_settings_update(actor=request.user, **form.settings_changes())
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Programme settings saved. The next plan uses them.")
                return redirect("programme_settings")
    context = {
        "nav": NAV,
        "form": form,
        "closed_form": closed_form,
        "next_windows": next_windows(settings),
        "errors": error_summary_items(form, closed_form),
        "closed_periods": list(
            ClosedPeriod.objects.filter(ends_on__gte=dt.date.today() - dt.timedelta(days=30))[:200]
        ),
    }
    return render(request, "waves/settings.html", context, status=400 if context["errors"] else 200)


@login_required
@require_POST
def closed_period_remove_view(request, pk: int):
    require_planner(request.user)
    period = get_object_or_404(ClosedPeriod, pk=pk)
    closed_period_remove(actor=request.user, period=period)
    messages.success(request, f"{period.name} removed")
    return redirect("programme_settings")
