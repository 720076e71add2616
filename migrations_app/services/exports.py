"""Background CSV exports: the whole audit log or every mailbox a person may see, written to a file by a worker
with progress, then downloaded. A web request that streams millions of rows is killed by a 30 s proxy
timeout; this one returns at once (the same submit -> poll -> result pattern as the import jobs)."""

import csv
import logging
import tempfile

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone

from migrations_app.models import Export, User
from migrations_app.selectors.exports import export_rows
from migrations_app.services.events import event_record
from migrations_app.views._csv import neutralise

logger = logging.getLogger(__name__)
PROGRESS_EVERY = 5_000  # rows between two progress updates (one short UPDATE each)


@transaction.atomic
def export_start(*, actor: User, kind: str, params: str = "") -> Export:
    """Queue an export of what `actor` may see, with the page's filters (a query string)."""
    if kind not in Export.Kind.values:
        raise ValidationError({"kind": f"Not an export: {kind}"})
    if not actor.is_authenticated:
        raise ValidationError("Sign in to export")
    export = Export.objects.create(kind=kind, params=params[:2000], requested_by=actor)
    event_record(
        action="export.requested",
        actor=actor,
        subject=export.filename,
        data={"export": export.pk, "kind": kind, "params": export.params},
    )
    from migrations_app.tasks import export_run as task

    transaction.on_commit(lambda: task.delay(export.pk))
    return export


def export_run(*, export_id: int) -> Export | None:
    """Write the file. Idempotent: only a queued export is taken (conditional UPDATE). Progress is saved every
    PROGRESS_EVERY rows, outside any transaction, so the page sees it move."""
    if not Export.objects.filter(pk=export_id, status=Export.Status.QUEUED).update(
        status=Export.Status.RUNNING, started_at=timezone.now()
    ):
        return Export.objects.filter(pk=export_id).first()
    export = Export.objects.select_related("requested_by").get(pk=export_id)
    try:
        header, rows = export_rows(export.kind, export.requested_by, QueryDict(export.params))
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as out:
            out.write("\ufeff")  # a byte-order mark: Excel then reads the file as UTF-8
            writer = csv.writer(out)
            writer.writerow([neutralise(h) for h in header])
            done = 0
            for row in rows:
                writer.writerow([neutralise(cell) for cell in row])
                done += 1
                if done % PROGRESS_EVERY == 0:
                    Export.objects.filter(pk=export.pk).update(rows_done=done)
            out.seek(0)
            export.file.save(export.filename, File(out), save=False)
    except Exception as exc:
        logger.exception("export %s failed", export.pk)
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.FAILED,
            failure=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        return Export.objects.get(pk=export.pk)
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.SUCCEEDED, file=export.file.name, rows_done=done, finished_at=timezone.now()
    )
    return Export.objects.get(pk=export.pk)
