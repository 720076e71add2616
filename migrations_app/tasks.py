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


@shared_task
def wave_tick() -> None:
    """Beat, every minute: start, fill, carry over and complete waves."""
    from migrations_app.services.execution import wave_tick as tick

    tick()


@shared_task
def wave_pump(wave_id: int) -> None:
    """Fill a running wave's free slots (queued after every finished mailbox)."""
    from migrations_app.models import Wave
    from migrations_app.services.execution import wave_pump as pump

    wave = Wave.objects.select_related("source_endpoint", "target_endpoint").filter(pk=wave_id).first()
    if wave is not None:
        pump(wave=wave)


# acks_late: a worker that dies mid-copy leaves the message unacknowledged and the broker redelivers it; the
# lease makes a redelivery harmless while the first run is still alive.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def mailboxes_work(mailbox_ids: list[int], phase: str) -> None:
    from migrations_app.services.execution import mailboxes_run

    mailboxes_run(mailbox_ids=mailbox_ids, phase=phase)


@shared_task(acks_late=True)
def mailbox_unswitch(mailbox_id: int, actor_id: int | None, reason: str) -> None:
    """Route a mailbox's mail back to the source (then its roll back completes)."""
    from migrations_app.services.execution import mailbox_unswitch_run

    mailbox_unswitch_run(mailbox_id=mailbox_id, actor_id=actor_id, reason=reason)


@shared_task
def reconcile_stale() -> None:
    """Requeue mailboxes whose heartbeat went stale."""
    from migrations_app.services.execution import reconcile_stale as reconcile

    reconcile()


@shared_task
def idempotency_keys_purge() -> None:
    """Beat, hourly: forget Idempotency-Key responses past their time."""
    from migrations_app.services.idempotency import idempotency_keys_purge as purge

    purge()


@shared_task
def webhooks_dispatch() -> None:
    """Beat, every 10 s: turn new events into webhook deliveries and queue the due ones."""
    from migrations_app.services.webhooks import webhooks_dispatch as dispatch

    dispatch()


# acks_late: a delivery whose worker died is redelivered; the attempt count in the conditional UPDATE keeps
# two workers from both recording the same attempt.
@shared_task(acks_late=True)
def webhook_deliver(delivery_id: int) -> None:
    from migrations_app.services.webhooks import webhook_deliver as deliver

    deliver(delivery_id=delivery_id)
