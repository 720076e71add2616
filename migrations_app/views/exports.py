"""Background CSV exports: ask (POST, from the audit log or the mailbox search), watch the progress, download.
Only the person who asked sees an export."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from migrations_app.models import Export
from migrations_app.services.exports import export_start


def _own(request, pk: int) -> Export:
    return get_object_or_404(Export, pk=pk, requested_by=request.user)


@login_required
@require_POST
def export_create(request):
    try:
        export = export_start(
            actor=request.user, kind=request.POST.get("kind", ""), params=request.POST.get("params", "")
        )
    except ValidationError as error:
        raise Http404(" ".join(error.messages)) from error
    return redirect("export_detail", pk=export.pk)


@login_required
def export_detail(request, pk: int):
    return render(request, "exports/detail.html", {"export": _own(request, pk)})


@login_required
def export_progress_fragment(request, pk: int):
    """Polled by htmx every 2 s while the export is queued or running; once finished, reload the page."""
    export = _own(request, pk)
    if export.status in (Export.Status.SUCCEEDED, Export.Status.FAILED):
        return HttpResponseClientRefresh()
    return render(request, "exports/_progress.html", {"export": export})


@login_required
def export_download(request, pk: int):
    export = _own(request, pk)
    if export.status != Export.Status.SUCCEEDED or not export.file:
        raise Http404("This export is not ready")
    response = FileResponse(export.file.open("rb"), as_attachment=True, filename=export.filename)
    response["Cache-Control"] = "no-store"
    return response
