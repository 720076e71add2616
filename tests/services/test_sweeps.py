"""Nothing stays stuck for ever: an import job or readiness check whose task the broker lost is sent again, an
import whose worker died is run again (bounded, then failed with a reason the page shows), a readiness
check whose batches were lost is failed with a reason, and a webhook delivery whose task was lost is due
again after its claim."""

import datetime as dt
import time

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from migrations_app.models import ImportJob, Mailbox, ReadinessCheck, Webhook, WebhookDelivery
from migrations_app.services import sweeps
from migrations_app.services.imports import _progress_key, import_job_run
from migrations_app.services.readiness.checks import readiness_check_start
from migrations_app.services.sweeps import import_jobs_sweep, readiness_checks_sweep
from migrations_app.services.webhooks import webhook_deliveries_claim
from tests.services.test_import_jobs import create

LONG_AGO = dt.timedelta(hours=2)


@pytest.fixture(autouse=True)
def media_and_cache(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.INVENTORY_INLINE_MAX_BYTES = 10  # every upload goes to a worker
    cache.clear()
    yield
    cache.clear()


def lost_job(admin, organisation) -> ImportJob:
    """Queued, and its task never reached a worker (on_commit callbacks do not run in these tests)."""
    job = create(admin, organisation)
    assert job.status == ImportJob.Status.QUEUED
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - LONG_AGO)
    return job


def dead_worker(job: ImportJob, *, attempts: int, started_ago=dt.timedelta(minutes=20)) -> None:
    """RUNNING, started by a worker that was killed: no progress since."""
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now() - started_ago, attempts=attempts
    )
    cache.delete(_progress_key(job.pk))


def test_a_queued_import_whose_task_was_lost_is_sent_again_and_runs(
    org_a, admin_a, django_capture_on_commit_callbacks
):
    job = lost_job(admin_a, org_a)
    with django_capture_on_commit_callbacks(execute=True):
        assert import_jobs_sweep()["resent"] == 1
    job.refresh_from_db()
    assert (job.status, job.rows_created, job.attempts) == ("succeeded", 2, 1)
    assert Mailbox.objects.filter(organisation=org_a).count() == 2


def test_a_queued_import_is_sent_again_at_most_once_per_interval(org_a, admin_a):
    lost_job(admin_a, org_a)
    assert import_jobs_sweep()["resent"] == 1
    assert import_jobs_sweep()["resent"] == 0  # enqueued_at moved on


def test_an_import_whose_worker_died_is_run_again(org_a, admin_a, django_capture_on_commit_callbacks):
    job = lost_job(admin_a, org_a)
    dead_worker(job, attempts=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert import_jobs_sweep()["requeued"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 2)


def test_a_redelivered_task_takes_over_an_import_whose_worker_died(org_a, admin_a):
    """It used to find the job RUNNING and less than an hour old, and return: acknowledged, never finished."""
    job = lost_job(admin_a, org_a)
    dead_worker(job, attempts=1)
    assert import_job_run(job_id=job.pk).status == "succeeded"


def test_a_running_import_whose_progress_moves_is_left_alone(org_a, admin_a):
    job = lost_job(admin_a, org_a)
    dead_worker(job, attempts=1, started_ago=LONG_AGO)
    cache.set(_progress_key(job.pk), {"phase": "reading", "done": 10, "total": 100, "at": time.time()})
    assert import_jobs_sweep() == {"resent": 0, "requeued": 0, "failed": 0}
    assert import_job_run(job_id=job.pk).status == "running"


def test_an_import_that_keeps_losing_its_worker_is_failed_with_a_reason_the_page_shows(
    org_a, admin_a, settings, client_for
):
    job = lost_job(admin_a, org_a)
    dead_worker(job, attempts=settings.IMPORT_MAX_ATTEMPTS)
    assert import_jobs_sweep()["failed"] == 1
    job.refresh_from_db()
    assert job.status == "failed" and "stopped 3 times" in job.failure
    page = client_for(admin_a).get(reverse("import_detail", args=[job.pk]))
    assert "stopped 3 times without finishing" in page.content.decode()


def test_a_queued_readiness_check_whose_task_was_lost_is_sent_again(
    org_a, admin_a, django_capture_on_commit_callbacks
):
    Mailbox.objects.create(organisation=org_a, email="a@rj1.nhs.uk")
    check = readiness_check_start(actor=admin_a, organisation=org_a)
    ReadinessCheck.objects.filter(pk=check.pk).update(created_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        assert readiness_checks_sweep()["resent"] == 1
    check.refresh_from_db()
    assert check.status == "succeeded" and check.total == 1


def test_a_readiness_check_whose_batches_were_lost_is_failed_with_a_reason(
    org_a, admin_a, monkeypatch, settings
):
    check = readiness_check_start(actor=admin_a, organisation=org_a)
    ReadinessCheck.objects.filter(pk=check.pk).update(status="running", total=40, ready=10)
    assert readiness_checks_sweep()["failed"] == 0  # first look: counts noted
    clock = time.time() + settings.READINESS_STALL_SECONDS + 1
    monkeypatch.setattr(sweeps.time, "time", lambda: clock)
    assert readiness_checks_sweep()["failed"] == 1
    check.refresh_from_db()
    assert check.status == "failed" and "30 of 40 mailboxes were not checked" in check.failure


def test_a_readiness_check_that_moves_is_left_alone(org_a, admin_a, monkeypatch, settings):
    check = readiness_check_start(actor=admin_a, organisation=org_a)
    ReadinessCheck.objects.filter(pk=check.pk).update(status="running", total=40, ready=10)
    readiness_checks_sweep()
    ReadinessCheck.objects.filter(pk=check.pk).update(ready=20)
    clock = time.time() + settings.READINESS_STALL_SECONDS + 1
    monkeypatch.setattr(sweeps.time, "time", lambda: clock)
    assert readiness_checks_sweep()["failed"] == 0


def test_a_webhook_delivery_whose_task_was_lost_is_due_again_after_its_claim(org_a, settings):
    webhook = Webhook.objects.create(organisation=org_a, url="https://hooks.example.org/", secret="s" * 30)
    delivery = WebhookDelivery.objects.create(
        webhook=webhook, message_id="m", payload={}, next_attempt_at=timezone.now()
    )
    assert webhook_deliveries_claim() == [delivery.pk]  # its task is then lost with the broker
    assert webhook_deliveries_claim() == []  # not queued twice while the claim holds
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)  # WEBHOOK_CLAIM_SECONDS later
    )
    assert webhook_deliveries_claim() == [delivery.pk]
