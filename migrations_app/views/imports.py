"""Inventory and permissions uploads, the import job page with its live progress, and the affinity report.

The pattern is submit -> poll -> result: the upload view calls the import service (small files finish in
the request, large ones are queued), then the job page polls a progress fragment every 2 s with htmx until
the job is finished, when the fragment tells the browser to reload the page with the result."""

import csv
import io

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from migrations_app.forms import IMPORT_KINDS, ImportUploadForm
from migrations_app.models import ImportJob
from migrations_app.selectors.scoping import (
    can_administer,
    import_jobs_visible_to,
    organisations_visible_to,
    require_administer,
    require_programme_office,
)
from migrations_app.services.affinity import affinity_largest_groups
from migrations_app.services.imports import import_job_create, import_job_retry_valid_rows, import_progress
from migrations_app.services.readiness.leavers import leavers_in_file, leavers_retire
from migrations_app.views._helpers import add_service_errors, error_summary_items, paginate, posted

NAV = "imports"

# What each file holds, for the help text and the example files. Keep in step with services/imports.py.
COLUMNS = {
    ImportJob.Kind.INVENTORY: [
        ("email", "required", "the primary SMTP address, like jane.doe@rj1.nhs.uk"),
        ("display_name", "optional", "the name people see"),
        ("kind", "required", "user, shared, room or equipment"),
        ("size_bytes", "required", "the mailbox size in whole bytes"),
        ("item_count", "required", "the number of items"),
        ("affinity_group", "optional", "mailboxes that must move together share a group name"),
        ("target_upn", "optional", "the account in Exchange Online, when it differs from the address"),
    ],
    ImportJob.Kind.PERMISSIONS: [
        ("mailbox", "required", "the address of the mailbox being shared"),
        ("delegate", "required", "the address of the person or mailbox given access"),
        ("right", "required", "FullAccess, SendAs or SendOnBehalf"),
    ],
}
EXAMPLE_ROWS = {
    ImportJob.Kind.INVENTORY: [
        [
            "jane.doe@rj1.nhs.uk",
            "Jane Doe",
            "user",
            "1288490188",
            "41230",
            "",
            "jane.doe@gstt.onmicrosoft.com",
        ],
        ["reception.rj1@rj1.nhs.uk", "Reception", "shared", "734003200", "90211", "front-desk", ""],
    ],
    ImportJob.Kind.PERMISSIONS: [
        ["reception.rj1@rj1.nhs.uk", "jane.doe@rj1.nhs.uk", "FullAccess"],
        ["jane.doe@rj1.nhs.uk", "john.smith@rj1.nhs.uk", "SendOnBehalf"],
    ],
}


def _kind(kind: str) -> ImportJob.Kind:
    if kind not in IMPORT_KINDS:
        raise Http404("No such kind of import")
    return IMPORT_KINDS[kind]


def _visible_job(request, pk: int) -> ImportJob:
    return get_object_or_404(
        import_jobs_visible_to(request.user).select_related("organisation", "created_by"), pk=pk
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_upload(request, ods_code: str, kind: str):
    kind = _kind(kind)
    organisation = get_object_or_404(organisations_visible_to(request.user), ods_code=ods_code.upper())
    require_administer(request.user, organisation)
    form = ImportUploadForm(*posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            job = import_job_create(
                actor=request.user,
                organisation=organisation,
                kind=kind,
                uploaded_file=form.cleaned_data["file"],
                import_valid_rows=form.cleaned_data["import_valid_rows"],
            )
        except ValidationError as error:
            add_service_errors(form, error, field_map={"uploaded_file": "file"})
        else:
            if form.cleaned_data.get("complete") and kind == ImportJob.Kind.INVENTORY:
                return redirect(reverse("import_detail", args=[job.pk]) + "?complete=1#leavers")
            return redirect("import_detail", pk=job.pk)
    context = {
        "nav": NAV,
        "organisation": organisation,
        "kind": kind,
        "columns": COLUMNS[kind],
        "form": form,
        "errors": error_summary_items(form),
    }
    return render(request, "imports/upload.html", context, status=400 if context["errors"] else 200)


@login_required
@require_GET
def import_template(request, kind: str):
    """An example CSV with the right header and two rows, to fill in."""
    kind = _kind(kind)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([name for name, _, _ in COLUMNS[kind]])
    writer.writerows(EXAMPLE_ROWS[kind])
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{kind.value}-example.csv"'
    return response


@login_required
@require_GET
def import_list(request):
    jobs = (
        import_jobs_visible_to(request.user)
        .select_related("organisation", "created_by")
        .order_by("-created_at", "-id")
    )
    page, pagination = paginate(request, jobs)
    return render(request, "imports/list.html", {"nav": NAV, "page": page, "pagination": pagination})


@login_required
@require_GET
def import_detail(request, pk: int):
    job = _visible_job(request, pk)
    context = {
        "nav": NAV,
        "job": job,
        "progress": None if job.is_finished else import_progress(job),
        "can_retry": (
            job.status == ImportJob.Status.REJECTED
            and job.rows_valid > 0
            and job.organisation is not None
            and can_administer(request.user, job.organisation)
        ),
        "can_upload": job.organisation is not None and can_administer(request.user, job.organisation),
        "leavers": _leavers_preview(request, job),
    }
    return render(request, "imports/detail.html", context)


def _complete_inventory(request, job: ImportJob) -> bool:
    return (
        job.kind == ImportJob.Kind.INVENTORY
        and job.status == ImportJob.Status.SUCCEEDED
        and job.organisation is not None
        and bool(job.file)
        and can_administer(request.user, job.organisation)
    )


def _leavers_preview(request, job: ImportJob):
    """?complete=1 on a successful organisation inventory: the organisation's mailboxes the file leaves out."""
    if request.GET.get("complete") != "1" or not _complete_inventory(request, job):
        return None
    with job.file.open("rb") as source:
        return leavers_in_file(organisation=job.organisation, source=source)


@login_required
@require_POST
def import_retire_leavers(request, pk: int):
    """Confirmed: retire the mailboxes this complete inventory leaves out (read from its file again now)."""
    job = _visible_job(request, pk)
    if not _complete_inventory(request, job):
        raise PermissionDenied(
            "Only a successful inventory of an organisation you administer can retire leavers"
        )
    try:
        with job.file.open("rb") as source:
            done = leavers_retire(
                organisation=job.organisation,
                actor=request.user,
                source=source,
                reason=request.POST.get("reason", ""),
            )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(reverse("import_detail", args=[job.pk]) + "?complete=1#leavers")
    messages.success(
        request,
        f"{len(done.retirable)} mailbox(es) retired"
        + (f"; {len(done.in_flight)} being moved were left as they are" if done.in_flight else ""),
    )
    return redirect("organisation_detail", ods_code=job.organisation.ods_code)


@login_required
@require_GET
def import_progress_fragment(request, pk: int):
    """Polled by htmx every 2 s while the job is queued or running; once finished, reload the whole page."""
    job = _visible_job(request, pk)
    if job.is_finished:
        return HttpResponseClientRefresh()
    return render(request, "imports/_progress.html", {"job": job, "progress": import_progress(job)})


@login_required
@require_POST
def import_retry(request, pk: int):
    job = _visible_job(request, pk)
    if job.organisation is not None:
        require_administer(request.user, job.organisation)
    else:
        require_programme_office(request.user)
    try:
        new_job = import_job_retry_valid_rows(job=job, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("import_detail", pk=job.pk)
    return redirect("import_detail", pk=new_job.pk)


@login_required
@require_GET
def affinity_report(request):
    require_programme_office(request.user)
    threshold = settings.PROGRAMME_EVENING_WAVE_MAILBOXES
    groups = affinity_largest_groups(limit=50)
    context = {
        "nav": "affinity",
        "groups": groups,
        "threshold": threshold,
        "too_big": sum(1 for group in groups if group["mailboxes"] > threshold),
    }
    return render(request, "imports/affinity.html", context)
