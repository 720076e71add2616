"""Organisation pages: the scoped list, one organisation, enrolment, pre-create and invite, editing.

Scoping only through selectors.scoping: an organisation outside the user's scope is a 404 (its existence is
not revealed); a forbidden action on one they can see (a viewer editing) is a 403."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseStopPolling

from migrations_app.forms import (
    InventoryFilterForm,
    OrganisationEditForm,
    OrganisationEnrolForm,
    OrganisationFilterForm,
    OrganisationInviteForm,
    blackout_formset,
)
from migrations_app.models import Contact, Invitation, Mailbox, Organisation, User, Wave
from migrations_app.selectors.mailboxes import (
    LIST_FIELDS,
    mailboxes_by_address_prefix,
    mailboxes_by_name_prefix,
)
from migrations_app.selectors.organisations import (
    mailbox_counts_by_organisation,
    organisation_mailbox_totals,
    organisations_filtered,
)
from migrations_app.selectors.progress import (
    OrganisationCounters,
    organisation_counters,
    organisation_counts_in_waves,
    organisation_progress,
    organisation_wave_ids,
)
from migrations_app.selectors.scoping import (
    can_administer,
    events_visible_to,
    import_jobs_visible_to,
    organisations_visible_to,
    require_administer,
    require_programme_office,
    webhooks_visible_to,
)
from migrations_app.selectors.waves import wave_responses
from migrations_app.services.organisations import (
    organisation_enrol,
    organisation_precreate_and_invite,
    organisation_update,
)
from migrations_app.views._csv import CHUNK_SIZE, csv_response
from migrations_app.views._helpers import add_service_errors, error_summary_items, paginate, posted
from migrations_app.views.mailboxes import MAILBOX_CSV_HEADER, mailbox_csv_rows
from migrations_app.views.readiness import readiness_context
from migrations_app.views.support import organisation_support_context

NAV = "organisations"


def can_enrol(user: User) -> bool:
    return user.is_authenticated and (user.is_trust_admin or user.is_programme_office)


def _visible_organisation(request, ods_code: str) -> Organisation:
    return get_object_or_404(organisations_visible_to(request.user), ods_code=ods_code.upper())


@login_required
def organisation_list(request):
    filters = OrganisationFilterForm(request.GET or None)
    criteria = filters.cleaned_data if filters.is_valid() else {}
    organisations = organisations_filtered(
        organisations_visible_to(request.user).select_related("parent"),
        status=criteria.get("status", ""),
        region=criteria.get("region", ""),
        search=criteria.get("q", ""),
        stage=criteria.get("stage", ""),
    )
    page, pagination = paginate(request, organisations)
    counts = mailbox_counts_by_organisation(org.pk for org in page.object_list)
    context = {
        "nav": NAV,
        "filters": filters,
        "page": page,
        "pagination": pagination,
        "rows": [(org, counts.get(org.pk, 0)) for org in page.object_list],
        "can_enrol": can_enrol(request.user),
        "can_invite": request.user.is_programme_office,
    }
    template = "organisations/_list_results.html" if request.htmx else "organisations/list.html"
    return render(request, template, context)


@login_required
def organisation_detail(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    contacts = {c.role: c for c in organisation.contacts.all()}
    counters = organisation_counters(organisation)  # read once for progress, waves, readiness and support
    context = {
        "nav": NAV,
        "organisation": organisation,
        "primary_contact": contacts.get(Contact.Role.PRIMARY),
        "technical_contact": contacts.get(Contact.Role.TECHNICAL),
        "blackouts": list(organisation.blackouts.all()),
        "imports": list(
            import_jobs_visible_to(request.user)
            .filter(organisation=organisation)
            .select_related("created_by")[:10]
        ),
        "events": list(
            events_visible_to(request.user).filter(organisation=organisation).select_related("actor")[:10]
        ),
        "invitations": (
            list(Invitation.objects.filter(organisation=organisation).order_by("-created_at")[:5])
            if request.user.is_programme_office
            else []
        ),
        "can_edit": can_administer(request.user, organisation),
        # only for those who administer it (the selector returns none to anyone else)
        "webhooks": list(webhooks_visible_to(request.user).filter(organisation=organisation)[:20]),
        "progress": organisation_progress(organisation, counters),
        "waves": _organisation_waves(organisation, counters),
        **_inventory_context(request, organisation),
        **readiness_context(request, organisation, counters),
        **organisation_support_context(request.user, organisation, counters),
    }
    return render(request, "organisations/detail.html", context)


def _organisation_waves(
    organisation: Organisation, counters: OrganisationCounters | None = None
) -> list[dict]:
    """The organisation's waves, each with its go / no-go and the organisation's mailboxes in it."""
    # Every wave the organisation is in is visible to whoever may see the organisation (selectors.waves)
    ids = organisation_wave_ids(organisation, counters)
    waves = list(Wave.objects.filter(pk__in=ids).order_by("starts_at", "id"))
    counts = organisation_counts_in_waves(organisation, ids, counters)
    rows = []
    for wave in waves:
        response = wave_responses(wave).get(organisation.pk)  # a few waves per organisation
        mailboxes, migrated = counts.get(wave.pk, (0, 0))
        rows.append(
            {
                "wave": wave,
                "response": response.kind if response else "",
                "mailboxes": mailboxes,
                "migrated": migrated,
            }
        )
    return rows


INVENTORY_PER_PAGE = 50


def _inventory(request, organisation: Organisation):
    """The organisation's mailboxes, filtered (state, kind, address or name prefix), in id order."""
    filters = InventoryFilterForm(request.GET or None)
    criteria = filters.cleaned_data if filters.is_valid() else {}
    mailboxes = Mailbox.objects.filter(organisation=organisation)
    if criteria.get("state"):
        mailboxes = mailboxes.filter(state=criteria["state"])
    if criteria.get("kind"):
        mailboxes = mailboxes.filter(kind=criteria["kind"])
    if criteria.get("q"):
        by_address = mailboxes_by_address_prefix(mailboxes, criteria["q"]).values("pk")
        by_name = mailboxes_by_name_prefix(mailboxes, criteria["q"]).values("pk")
        mailboxes = mailboxes.filter(Q(pk__in=by_address) | Q(pk__in=by_name))
    # (state, id) order: mailbox_org_state_idx (organisation, state, id) gives it straight from the index,
    # where id order alone would sort all of a 20,000-mailbox trust's rows for each page
    return filters, mailboxes.order_by("state", "id")


def _inventory_context(request, organisation: Organisation) -> dict:
    """One page of the inventory, keyset-paged (?after=<state>:<id>: no OFFSET, no COUNT; the total comes from
    the counters)."""
    filters, mailboxes = _inventory(request, organisation)
    after = request.GET.get("after", "")
    state, _, last_id = after.partition(":")
    if state in Mailbox.State.values and last_id.isdigit():
        mailboxes = mailboxes.filter(Q(state__gt=state) | Q(state=state, id__gt=int(last_id)))
    else:
        after = ""
    page = list(mailboxes.select_related("organisation", "wave").only(*LIST_FIELDS)[: INVENTORY_PER_PAGE + 1])
    next_params = None
    if len(page) > INVENTORY_PER_PAGE:
        page = page[:INVENTORY_PER_PAGE]
        params = request.GET.copy()
        params["after"] = f"{page[-1].state}:{page[-1].pk}"
        next_params = params.urlencode()
    export_params = request.GET.copy()
    export_params.pop("after", None)
    return {
        "inventory_filters": filters,
        "inventory": page,
        "inventory_next": next_params,
        "inventory_first_page": not after,
        "inventory_export": export_params.urlencode(),
    }


@login_required
def organisation_inventory(request, ods_code: str):
    """The inventory part of the organisation page (htmx filtering and paging). Opened directly (a bookmark, a
    link opened in a new tab) it is the whole organisation page with the same filters, not an unstyled part."""
    organisation = _visible_organisation(request, ods_code)
    if not request.htmx:
        query = request.GET.urlencode()
        target = reverse("organisation_detail", args=[organisation.ods_code])
        return redirect(f"{target}{'?' + query if query else ''}#inventory-heading")
    context = {"organisation": organisation, **_inventory_context(request, organisation)}
    return render(request, "organisations/_inventory.html", context)


@login_required
def organisation_progress_fragment(request, ods_code: str):
    """The organisation's live progress, polled while any of its mailboxes is moving."""
    organisation = _visible_organisation(request, ods_code)
    progress = organisation_progress(organisation)
    response = render(
        request, "organisations/_progress.html", {"organisation": organisation, "progress": progress}
    )
    if not progress["live"]:
        return HttpResponseStopPolling(response.content)
    return response


@login_required
def organisation_inventory_csv(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    _, mailboxes = _inventory(request, organisation)
    return csv_response(
        f"{organisation.ods_code}-mailboxes.csv", MAILBOX_CSV_HEADER, mailbox_csv_rows(mailboxes)
    )


@login_required
def organisation_list_csv(request):
    filters = OrganisationFilterForm(request.GET or None)
    criteria = filters.cleaned_data if filters.is_valid() else {}
    organisations = organisations_filtered(
        organisations_visible_to(request.user).select_related("parent"),
        status=criteria.get("status", ""),
        region=criteria.get("region", ""),
        search=criteria.get("q", ""),
    )

    def rows():
        for chunk in _chunks(organisations.iterator(chunk_size=CHUNK_SIZE), CHUNK_SIZE):
            counts = organisation_mailbox_totals(o.pk for o in chunk)  # one GROUP BY per chunk
            for o in chunk:
                total, migrated = counts.get(o.pk, (0, 0))
                yield [
                    o.ods_code,
                    o.name,
                    o.get_kind_display(),
                    o.get_region_display(),
                    o.get_status_display(),
                    o.parent.ods_code if o.parent else "",
                    total,
                    migrated,
                ]

    header = ["ods_code", "name", "kind", "region", "status", "parent_ods_code", "mailboxes", "migrated"]
    return csv_response("organisations.csv", header, rows())


def _chunks(iterable, size: int):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _invited_organisation_to_complete(user: User, ods_code: str) -> Organisation | None:
    """A pre-created organisation this user may complete (they accepted its invitation), for the initial form."""
    organisation = Organisation.objects.filter(
        ods_code=(ods_code or "").strip().upper(), status=Organisation.Status.INVITED
    ).first()
    if organisation is not None and can_administer(user, organisation):
        return organisation
    return None


@login_required
@require_http_methods(["GET", "POST"])
def organisation_enrol_view(request):
    if not can_enrol(request.user):
        raise PermissionDenied("Only trust admins and the programme office can enrol an organisation")
    initial = {}
    invited = _invited_organisation_to_complete(request.user, request.GET.get("ods_code", ""))
    if invited is not None:
        initial = {
            "ods_code": invited.ods_code,
            "name": invited.name,
            "kind": invited.kind,
            "region": invited.region,
            "parent_ods_code": invited.parent.ods_code if invited.parent else "",
        }
    form = OrganisationEnrolForm(posted(request)[0], initial=initial)
    blackouts = blackout_formset(posted(request)[0])
    if request.method == "POST":
        form_ok, blackouts_ok = form.is_valid(), blackouts.is_valid()
        if form_ok and blackouts_ok:
            try:
                organisation = organisation_enrol(
                    actor=request.user, blackouts=blackouts.blackouts(), **form.service_kwargs()
                )
            except ValidationError as error:
                add_service_errors(form, error, field_map=_SERVICE_FIELDS)
            else:
                messages.success(request, f"{organisation.name} ({organisation.ods_code}) is enrolled")
                return redirect("organisation_detail", ods_code=organisation.ods_code)
    context = {
        "nav": NAV,
        "form": form,
        "blackouts": blackouts,
        "invited": invited,
        "errors": error_summary_items(form, blackouts),
    }
    return render(request, "organisations/enrol.html", context, status=400 if context["errors"] else 200)


# Service field names that the forms show under another name.
_SERVICE_FIELDS = {
    "parent": "parent_ods_code",
    "primary_contact": "primary_email",
    "technical_contact": "technical_email",
    "blackouts": None,
    "gates": "gates",
}


@login_required
@require_http_methods(["GET", "POST"])
def organisation_invite_view(request):
    require_programme_office(request.user)
    form = OrganisationInviteForm(posted(request)[0])
    if request.method == "POST" and form.is_valid():
        try:
            invitation = organisation_precreate_and_invite(actor=request.user, **form.service_kwargs())
        except ValidationError as error:
            add_service_errors(form, error, field_map=_SERVICE_FIELDS)
        else:
            organisation = invitation.organisation
            messages.success(
                request,
                f"{organisation.ods_code} is created and an invitation is on its way to {invitation.email}",
            )
            return redirect("organisation_detail", ods_code=organisation.ods_code)
    context = {
        "nav": NAV,
        "form": form,
        "errors": error_summary_items(form),
        "invitation_days": settings.INVITATION_DAYS,
    }
    return render(request, "organisations/invite.html", context, status=400 if context["errors"] else 200)


@login_required
@require_http_methods(["GET", "POST"])
def organisation_edit(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    require_administer(request.user, organisation)
    data = posted(request)[0]
    form = OrganisationEditForm(data, organisation=organisation, actor=request.user)
    blackouts = blackout_formset(data, organisation=organisation)
    if request.method == "POST":
        form_ok, blackouts_ok = form.is_valid(), blackouts.is_valid()
        if form_ok and blackouts_ok:
            try:
                organisation_update(
                    actor=request.user,
                    organisation=organisation,
                    data={**form.service_data(), "blackouts": blackouts.blackouts()},
                )
            except ValidationError as error:
                add_service_errors(form, error, field_map=_SERVICE_FIELDS)
            else:
                messages.success(request, f"{organisation.name} is updated")
                return redirect("organisation_detail", ods_code=organisation.ods_code)
    context = {
        "nav": NAV,
        "organisation": organisation,
        "form": form,
        "blackouts": blackouts,
        "errors": error_summary_items(form, blackouts),
    }
    return render(request, "organisations/edit.html", context, status=400 if context["errors"] else 200)
