"""Thin Celery tasks: fetch by id, call a service. Services queue them with transaction.on_commit."""

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

WORKER_HEARTBEAT_KEY = "portal:worker-heartbeat"


@shared_task
def worker_heartbeat() -> None:
    """Beat sends this every 30 s; /healthz reports how long ago a worker last ran it."""
    cache.set(WORKER_HEARTBEAT_KEY, timezone.now().isoformat(), timeout=600)


@shared_task(acks_late=True)
def run_import_job(job_id: int) -> None:
    from migrations_app.services.imports import import_job_run

    import_job_run(job_id=job_id)
