"""The beat's sweep for work that would otherwise be stuck for ever (every minute, tasks.stuck_work_sweep).

- An import job or a readiness check still QUEUED after SWEEP_QUEUED_AFTER_SECONDS had its task lost (the
  broker was down when it was queued, or restarted before a worker took it): its task is sent again. The
  tasks claim with a conditional UPDATE, so a second message for a job that did start is harmless.
- An import job RUNNING whose progress has not moved for IMPORT_STALL_SECONDS lost its worker: it goes back
  to QUEUED and is sent again, up to IMPORT_MAX_ATTEMPTS runs; then it is failed with a reason the page
  shows. The import runs in one transaction, so a lost run left nothing behind.
- A readiness check RUNNING whose counts have not moved for READINESS_STALL_SECONDS lost batches (which ones
  is not recorded): it is failed with a reason, and can be run again.
- Webhook deliveries need no sweep: a claimed delivery whose task is lost is due again after
  WEBHOOK_CLAIM_SECONDS (services/webhooks.webhook_deliveries_claim).

Each pass is bounded (SWEEP_LIMIT rows of each kind) and set-based where it writes."""

import datetime as dt
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from migrations_app.models import ImportJob, ReadinessCheck
from migrations_app.services.imports import import_job_fail_stalled, import_job_stalled

SWEEP_LIMIT = 200


def import_jobs_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    from migrations_app.tasks import run_import_job

    now = now or timezone.now()
    due = now - dt.timedelta(seconds=settings.SWEEP_QUEUED_AFTER_SECONDS)
    lost = list(
        ImportJob.objects.annotate(sent=Coalesce("enqueued_at", "created_at"))
        .filter(status=ImportJob.Status.QUEUED, sent__lt=due)
        .order_by("id")
        .values_list("pk", flat=True)[:SWEEP_LIMIT]
    )
    requeued, failed = [], 0
    for job in ImportJob.objects.filter(status=ImportJob.Status.RUNNING).order_by("id")[:SWEEP_LIMIT]:
        if not import_job_stalled(job, now=now):
            continue
        if job.attempts >= settings.IMPORT_MAX_ATTEMPTS:
            failed += import_job_fail_stalled(job=job)
        elif ImportJob.objects.filter(
            pk=job.pk, status=ImportJob.Status.RUNNING, attempts=job.attempts, started_at=job.started_at
        ).update(status=ImportJob.Status.QUEUED):
            requeued.append(job.pk)
    resend = lost + requeued
    ImportJob.objects.filter(pk__in=resend, status=ImportJob.Status.QUEUED).update(enqueued_at=now)
    for job_id in resend:
        transaction.on_commit(lambda job_id=job_id: run_import_job.delay(job_id))
    return {"resent": len(lost), "requeued": len(requeued), "failed": failed}


def _stall_key(check_id: int) -> str:
    return f"sweep:readiness:{check_id}"


def readiness_checks_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    from migrations_app.services.readiness.checks import readiness_check_fail
    from migrations_app.tasks import readiness_check_dispatch

    now = now or timezone.now()
    due = now - dt.timedelta(seconds=settings.SWEEP_QUEUED_AFTER_SECONDS)
    resent = 0
    for check_id in ReadinessCheck.objects.filter(
        status=ReadinessCheck.Status.QUEUED, created_at__lt=due
    ).values_list("pk", flat=True)[:SWEEP_LIMIT]:
        # at most one extra message per SWEEP_QUEUED_AFTER_SECONDS for each
        if cache.add(f"sweep:readiness-queued:{check_id}", 1, settings.SWEEP_QUEUED_AFTER_SECONDS):
            transaction.on_commit(lambda check_id=check_id: readiness_check_dispatch.delay(check_id))
            resent += 1
    failed = 0
    running = ReadinessCheck.objects.filter(status=ReadinessCheck.Status.RUNNING).annotate(
        done=F("ready") + F("blocked") + F("unchecked")
    )
    for check_id, done, total in running.values_list("pk", "done", "total")[:SWEEP_LIMIT]:
        seen = cache.get(_stall_key(check_id))
        if seen is None or seen["done"] != done:
            cache.set(_stall_key(check_id), {"done": done, "since": time.time()}, 7 * 24 * 3600)
            continue
        if time.time() - seen["since"] > settings.READINESS_STALL_SECONDS:
            minutes = settings.READINESS_STALL_SECONDS // 60
            readiness_check_fail(
                check_id=check_id,
                failure=(
                    f"Stopped: {total - done} of {total} mailboxes were not checked and nothing moved for "
                    f"{minutes} minutes (a worker or the queue lost their batches). The mailboxes already "
                    "checked keep their result; run the check again for the rest."
                ),
            )
            cache.delete(_stall_key(check_id))
            failed += 1
    return {"resent": resent, "failed": failed}


def stuck_work_sweep(*, now: dt.datetime | None = None) -> dict[str, dict[str, int]]:
    return {"imports": import_jobs_sweep(now=now), "readiness": readiness_checks_sweep(now=now)}
