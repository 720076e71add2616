"""The programme office's notification templates: the words for each moment, a preview with a real mailbox,
and the switch that turns a moment on (only after a preview)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from migrations_app.forms_comms import TemplateForm
from migrations_app.models import Contact, Mailbox, Moment, NotificationSettings, Wave
from migrations_app.services.notifications.templates import (
    placeholders_for,
    template_for,
    template_preview,
    template_previewed,
    template_switch,
    template_update,
    templates_all,
)
from migrations_app.views._helpers import add_service_errors, error_summary_items

NAV = "notifications"


def _require_office(request) -> None:
    if not request.user.is_programme_office:
        raise PermissionDenied("Only the programme office manages notification templates")


@login_required
def template_list(request):
    _require_office(request)
    return render(
        request,
        "notifications/templates.html",
        {"nav": NAV, "templates": templates_all(), "settings_row": NotificationSettings.load()},
    )


def _example_mailbox(email: str) -> Mailbox | None:
    """The mailbox to preview with: the one asked for, else one in the next announced wave, else any."""
    mailboxes = Mailbox.objects.select_related("organisation")
    if email:
        return mailboxes.filter(email=email.strip().lower()).first()
    wave = (
        Wave.objects.filter(status__in=(Wave.Status.APPROVED, Wave.Status.PROPOSED))
        .order_by("starts_at")
        .first()
    )
    if wave is not None:
        found = mailboxes.filter(wave=wave).order_by("id").first()
        if found:
            return found
    return mailboxes.order_by("id").first()


def _to(moment: str, example: Mailbox | None) -> str:
    """Who the preview goes to: the owner, or for the digest the organisation's contacts."""
    if example is None:
        return ""
    if moment != Moment.DIGEST:
        return example.email
    contacts = sorted(
        set(Contact.objects.filter(organisation_id=example.organisation_id).values_list("email", flat=True))
    )
    return ", ".join(contacts) or f"nobody: {example.organisation.name} has no contacts"


@login_required
@require_http_methods(["GET", "POST"])
def template_detail(request, moment: str):
    _require_office(request)
    if moment not in Moment.values:
        raise Http404("No such moment")
    template = template_for(moment)
    form = TemplateForm(initial={"subject": template.subject, "body": template.body})
    email = (request.POST.get("email") or request.GET.get("email") or "").strip()
    preview, example = None, None
    action = request.POST.get("action", "")
    try:
        if action == "save":
            form = TemplateForm(request.POST)
            if form.is_valid():
                template_update(moment=moment, actor=request.user, **form.cleaned_data)
                messages.success(request, "Saved. Preview it again before switching it on.")
                return redirect("notification_template", moment=moment)
        elif action == "preview":
            example = _example_mailbox(email)
            if example is None:
                messages.error(request, "There is no mailbox with that address to preview with")
            else:
                preview = template_preview(moment=moment, mailbox=example)
                template = template_previewed(moment=moment, actor=request.user)
        elif action in ("on", "off"):
            template_switch(moment=moment, actor=request.user, enabled=action == "on")
            messages.success(
                request, f"{template.get_moment_display()} is {'on' if action == 'on' else 'off'}"
            )
            return redirect("notification_template", moment=moment)
    except ValidationError as exc:
        if action == "save":
            add_service_errors(form, exc)
        else:
            messages.error(request, " ".join(exc.messages))
    return render(
        request,
        "notifications/template.html",
        {
            "nav": NAV,
            "template": template,
            "form": form,
            "errors": error_summary_items(form),
            "preview": preview,
            "example": example,
            "email": email,
            "placeholders": placeholders_for(moment),
            "to": _to(moment, example),
        },
    )
