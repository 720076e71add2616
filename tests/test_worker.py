"""A real Celery worker, consuming from a real broker, runs the work the web request queued.

The broker is the one the run is configured with: Redis in CI (CELERY_BROKER_URL), otherwise the embedded
filesystem transport in a private folder (so a `make run` worker on the same machine cannot take the message).
"""

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile

from migrations_app.models import ImportJob, Mailbox
from migrations_app.services.imports import import_job_create, import_progress


def _csv(rows: int) -> bytes:
    lines = ["email,display_name,kind,size_bytes,item_count,affinity_group"]
    lines += [f"person{i}@rj1.nhs.uk,Person {i},user,{1000 + i},{10 + i}," for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.django_db(transaction=True)
def test_a_large_upload_is_imported_by_a_worker_not_the_request(real_broker, settings, officer, org_a):
    settings.INVENTORY_INLINE_MAX_BYTES = 1_000  # this upload is larger: it must go to the worker
    upload = SimpleUploadedFile("inventory.csv", _csv(2_000), content_type="text/csv")

    job = import_job_create(
        actor=officer,
        organisation=org_a,
        kind=ImportJob.Kind.INVENTORY,
        uploaded_file=upload,
        import_valid_rows=False,
    )
    assert job.status == ImportJob.Status.QUEUED  # the request returned before any import work
    assert Mailbox.objects.count() == 0

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_finished:
                break
            time.sleep(0.2)

    assert job.status == ImportJob.Status.SUCCEEDED, job.failure
    assert job.rows_created == 2_000
    assert Mailbox.objects.filter(organisation=org_a).count() == 2_000
    assert import_progress(job)["percent"] == 100
