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
# lease makes a redelivery harmless while the first run is still alive. A mailbox whose copy keeps killing
# its worker (a poison pill) fails with WORKER_LOST after MIGRATION_MAX_DELIVERIES runs that never finished
# (services/execution/poison.py), however they were delivered (redelivery, the reconciler's requeue).
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


@shared_task(acks_late=True)
def readiness_check_dispatch(check_id: int) -> None:
    """Count a readiness check's mailboxes and queue their batches."""
    from migrations_app.services.readiness.checks import readiness_check_dispatch as dispatch
    from migrations_app.services.readiness.checks import readiness_check_fail

    try:
        dispatch(check_id=check_id)
    except Exception as exc:
        readiness_check_fail(check_id=check_id, failure=f"{type(exc).__name__}: {exc}")
        raise


# acks_late: a batch whose worker died is redelivered; writing a batch twice gives the same rows (the
# counts may then overshoot, never undershoot, so the check still finishes).
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def readiness_batch(self, check_id: int, mailbox_ids: list[int], attempt: int = 0) -> None:
    """Pre-flight one batch of a readiness check; an endpoint with no free slot is tried again shortly."""
    from migrations_app.services.readiness.checks import NoSlot, readiness_batch_run

    try:
        readiness_batch_run(check_id=check_id, mailbox_ids=mailbox_ids, attempt=attempt)
    except NoSlot as exc:
        raise self.retry(countdown=5) from exc


@shared_task
def readiness_recheck() -> None:
    """Beat: check again the mailboxes whose last check is stale or whose inventory row changed."""
    from migrations_app.services.readiness.checks import readiness_recheck_due

    readiness_recheck_due()


@shared_task
def organisations_mop_up_review() -> None:
    """Beat: organisations in Sync & Switch with nothing planned left and something left behind -> Mop-up."""
    from migrations_app.services.readiness.stages import organisations_mop_up_review as review

    review()


@shared_task
def notifications_send() -> None:
    """Beat, every 15 s: schedule the notifications now due (set-based, at most once each) and send them
    within Notify's rate limit and daily allowance, nearest windows first."""
    from migrations_app.services.notifications.scheduling import notifications_schedule
    from migrations_app.services.notifications.sending import (
        notifications_requeue_stuck,
        notifications_send_due,
    )

    notifications_schedule()
    notifications_requeue_stuck()
    notifications_send_due()


@shared_task
def support_gate_evaluate() -> None:
    """Beat, hourly: hold the next waves of organisations whose last wave crossed a threshold."""
    from migrations_app.services.gate import gate_evaluate

    gate_evaluate()


@shared_task
def stuck_work_sweep() -> None:
    """Beat, every minute: send again what the broker lost, take over or fail what lost its worker."""
    from migrations_app.services.sweeps import stuck_work_sweep as sweep

    sweep()


@shared_task
def webhook_payloads_purge() -> None:
    """Beat, hourly: empty delivered webhook bodies past their retention."""
    from migrations_app.services.webhooks import webhook_payloads_purge as purge

    purge()


@shared_task
def event_partitions_ensure() -> None:
    """Beat, every 6 hours: the event table's partitions for this month and the coming months (PostgreSQL)."""
    import logging

    from migrations_app.services.event_partitions import event_partitions_ensure as ensure
    from migrations_app.services.event_partitions import event_partitions_status

    ensure()
    status = event_partitions_status()
    if not status["ok"]:
        logging.getLogger(__name__).error("event partitions need attention: %s", status)


@shared_task(acks_late=True)
def export_run(export_id: int) -> None:
    from migrations_app.services.exports import export_run as run

    run(export_id=export_id)
