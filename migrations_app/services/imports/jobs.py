"""Import jobs: an upload becomes a job, run inline when small and by a worker otherwise, with progress in the
cache for the page to poll, a retry of the valid rows, and the sweep of jobs whose worker died."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from migrations_app.models import ImportJob, Organisation, User
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.services.imports.inventory import (
    inventory_import,
)

logger = logging.getLogger(__name__)

PROGRESS_TIMEOUT = 24 * 3600


def _progress_key(job_id: int) -> str:
    return f"portal:import-progress:{job_id}"


def _require_may_import(*, actor: User, organisation: Organisation | None) -> None:
    if organisation is None:
        require_programme_office(actor)  # a national file names every organisation
    else:
        require_administer(actor, organisation)


def _queue_or_run(job: ImportJob, *, inline: bool | None = None) -> ImportJob:
    if inline is None:
        inline = job.size_bytes <= settings.INVENTORY_INLINE_MAX_BYTES
    if inline:
        return import_job_run(job_id=job.id)
    from migrations_app.tasks import run_import_job

    # Queued on commit: the worker must find the job and its file. (Sent inside the transaction, a fast
    # worker would look for a job that does not exist yet.)
    transaction.on_commit(lambda: run_import_job.delay(job.id))
    return job


def import_job_create(
    *,
    actor: User,
    organisation: Organisation | None,
    kind: str,
    uploaded_file,
    import_valid_rows: bool,
    inline: bool | None = None,
) -> ImportJob:
    """Save an upload as a job, then import it now (small) or hand it to a worker (large). `inline` forces
    one or the other (the API decides by row count)."""
    _require_may_import(actor=actor, organisation=organisation)
    if kind not in ImportJob.Kind.values:
        raise ValidationError(f"Unknown import kind {kind!r}")
    size = getattr(uploaded_file, "size", None) or 0
    if size > settings.INVENTORY_UPLOAD_MAX_BYTES:
        limit = settings.INVENTORY_UPLOAD_MAX_BYTES // (1024 * 1024)
        raise ValidationError(f"The file is larger than {limit} MB")
    name = (getattr(uploaded_file, "name", "") or "upload.csv").rsplit("/", 1)[-1][:255]
    job = ImportJob(
        kind=kind,
        organisation=organisation,
        created_by=actor,
        filename=name,
        size_bytes=size,
        import_valid_rows=import_valid_rows,
        status=ImportJob.Status.QUEUED,
    )
    job.file.save(name, uploaded_file, save=False)
    job.save()
    cache.set(_progress_key(job.id), {"phase": "queued", "done": 0, "total": size}, PROGRESS_TIMEOUT)
    job = _queue_or_run(job, inline=inline)
    job.refresh_from_db()
    return job


def import_job_retry_valid_rows(*, job: ImportJob, actor: User) -> ImportJob:
    """Import the valid rows of a rejected job's file, as a new job (the rejected one stays as it was)."""
    _require_may_import(actor=actor, organisation=job.organisation)
    if job.status != ImportJob.Status.REJECTED:
        raise ValidationError("Only a rejected import can be retried with its valid rows")
    retry = ImportJob.objects.create(
        kind=job.kind,
        organisation=job.organisation,
        created_by=actor,
        file=job.file.name,
        filename=job.filename,
        size_bytes=job.size_bytes,
        import_valid_rows=True,
        status=ImportJob.Status.QUEUED,
    )
    cache.set(
        _progress_key(retry.id), {"phase": "queued", "done": 0, "total": retry.size_bytes}, PROGRESS_TIMEOUT
    )
    retry = _queue_or_run(retry)
    retry.refresh_from_db()
    return retry


def import_job_stalled(job: ImportJob, *, now: dt.datetime | None = None) -> bool:
    """A running job whose progress has not moved for IMPORT_STALL_SECONDS lost its worker. The progress is
    in the shared cache (the import's own transaction hides its database writes until it commits); a job
    that never reported counts from when it started."""
    now = now or timezone.now()
    entry = cache.get(_progress_key(job.id)) or {}
    last = dt.datetime.fromtimestamp(entry["at"], tz=dt.UTC) if entry.get("at") else job.started_at
    return last is None or (now - last).total_seconds() > settings.IMPORT_STALL_SECONDS


def import_job_fail_stalled(*, job: ImportJob) -> bool:
    """A job that lost its worker IMPORT_MAX_ATTEMPTS times is failed, with a reason the page shows."""
    failed = ImportJob.objects.filter(pk=job.pk, status=job.status, attempts=job.attempts).update(
        status=ImportJob.Status.FAILED,
        finished_at=timezone.now(),
        failure=(
            f"The import stopped {job.attempts} times without finishing: the worker running it was lost "
            "(restarted, or out of memory). Nothing was imported. Upload the file again; if it keeps "
            "happening, tell the programme office."
        ),
    )
    if failed:
        cache.set(
            _progress_key(job.id),
            {"phase": "failed", "done": 0, "total": job.size_bytes, "at": 0},
            PROGRESS_TIMEOUT,
        )
    return bool(failed)


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued job. Idempotent: a finished job, or one another worker is running (its progress still
    moves), is left alone. A running job whose progress stopped lost its worker (a redelivered task after
    a kill): it is taken over, up to IMPORT_MAX_ATTEMPTS runs, then failed (services/sweeps.py does the same
    for a job whose task is lost altogether)."""
    now = timezone.now()
    job = ImportJob.objects.select_related("organisation", "created_by").get(pk=job_id)
    if job.status == ImportJob.Status.RUNNING:
        if not import_job_stalled(job, now=now):
            return job
        if job.attempts >= settings.IMPORT_MAX_ATTEMPTS:
            import_job_fail_stalled(job=job)
            job.refresh_from_db()
            return job
    elif job.status != ImportJob.Status.QUEUED:
        return job
    # the same row as read above, or another worker took it first
    claimed = ImportJob.objects.filter(
        pk=job_id, status=job.status, attempts=job.attempts, started_at=job.started_at
    ).update(status=ImportJob.Status.RUNNING, started_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return ImportJob.objects.get(pk=job_id)
    job.refresh_from_db()

    key = _progress_key(job.id)

    def progress(done: int, total: int) -> None:
        phase = "saving" if total and done >= total else "reading"
        cache.set(key, {"phase": phase, "done": done, "total": total, "at": time.time()}, PROGRESS_TIMEOUT)

    progress(0, job.size_bytes)
    try:
        if job.kind == ImportJob.Kind.PERMISSIONS:
            from migrations_app.services.affinity import permissions_import as run
        else:
            run = inventory_import
        with job.file.open("rb") as source:
            result = run(
                source=source,
                organisation=job.organisation,
                actor=job.created_by,
                import_valid_rows=job.import_valid_rows,
                progress=progress,
                total_bytes=job.size_bytes or None,
            )
    except Exception as exc:
        # The import's own transaction has rolled back: nothing of it is in the database.
        logger.exception("import job %s failed", job.id)
        job.status = ImportJob.Status.FAILED
        job.failure = (
            f"The import stopped on an unexpected error ({type(exc).__name__}: {exc}). Nothing was imported."
        )
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "failure", "finished_at"])
        cache.set(key, {"phase": "failed", "done": 0, "total": job.size_bytes}, PROGRESS_TIMEOUT)
        return job

    job.status = result.status
    job.rows_total, job.rows_valid = result.rows_total, result.rows_valid
    job.rows_created, job.rows_updated, job.rows_unchanged = result.created, result.updated, result.unchanged
    job.error_count = result.error_count
    job.errors = [asdict(e) for e in result.errors]
    job.summary = result.summary
    job.finished_at = timezone.now()
    job.save()
    cache.set(key, {"phase": "finished", "done": job.size_bytes, "total": job.size_bytes}, PROGRESS_TIMEOUT)
    return job


def import_progress(job: ImportJob) -> dict:
    """{"phase", "done", "total", "percent"} for a progress bar. The running import writes it to the shared
    cache, because the worker's database transaction is not visible until it commits."""
    if job.is_finished:
        phase = "failed" if job.status == ImportJob.Status.FAILED else "finished"
        return {"phase": phase, "done": job.size_bytes, "total": job.size_bytes, "percent": 100}
    state = cache.get(_progress_key(job.id)) or {"phase": job.status, "done": 0, "total": job.size_bytes}
    done, total = int(state.get("done", 0)), int(state.get("total", 0))
    percent = min(100, done * 100 // total) if total else 0
    if state.get("phase") == "saving":
        percent = min(percent, 99)  # the rows are still being written
    return {"phase": state.get("phase", "queued"), "done": done, "total": total, "percent": percent}
