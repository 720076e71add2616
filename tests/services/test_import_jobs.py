import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile

from migrations_app.models import Event, ImportJob, Mailbox
from migrations_app.services import imports
from migrations_app.services.imports import (
    import_job_create,
    import_job_retry_valid_rows,
    import_job_run,
    import_progress,
    inventory,
    reader,
)

HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group\n"
GOOD = HEADER + "a@rj1.nhs.uk,A,user,1,1,\nb@rj1.nhs.uk,B,user,1,1,\n"
ONE_BAD = HEADER + "a@rj1.nhs.uk,A,user,1,1,\nbad,B,user,1,1,\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(text, name="inventory.csv"):
    return SimpleUploadedFile(name, text.encode())


def create(actor, organisation, text=GOOD, kind="inventory", import_valid_rows=False):
    return import_job_create(
        actor=actor,
        organisation=organisation,
        kind=kind,
        uploaded_file=upload(text),
        import_valid_rows=import_valid_rows,
    )


def test_a_small_file_is_imported_during_the_request(org_a, admin_a):
    job = create(admin_a, org_a)
    assert (job.status, job.rows_created, job.created_by, job.filename) == (
        "succeeded",
        2,
        admin_a,
        "inventory.csv",
    )
    assert job.file.name.startswith("imports/")
    assert job.finished_at is not None
    assert Mailbox.objects.filter(organisation=org_a).count() == 2


def test_a_large_file_is_queued_for_a_worker_after_commit(
    org_a, admin_a, settings, django_capture_on_commit_callbacks
):
    settings.INVENTORY_INLINE_MAX_BYTES = 10
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = create(admin_a, org_a)
        assert job.status == ImportJob.Status.QUEUED
        assert import_progress(job)["phase"] == "queued"
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert (job.status, job.rows_created) == ("succeeded", 2)


def test_a_trust_admin_cannot_import_for_another_organisation(org_b, admin_a):
    with pytest.raises(PermissionDenied):
        create(admin_a, org_b)
    assert not ImportJob.objects.exists()


def test_a_viewer_cannot_import(org_a, viewer):
    with pytest.raises(PermissionDenied):
        create(viewer, org_a)


def test_only_the_programme_office_may_import_a_national_file(org_a, admin_a, officer):
    national = "ods_code," + HEADER + "RJ1,a@rj1.nhs.uk,A,user,1,1,\n"
    with pytest.raises(PermissionDenied):
        create(admin_a, None, national)
    job = create(officer, None, national)
    assert (job.status, job.organisation, job.rows_created) == ("succeeded", None, 1)


def test_a_rejected_job_keeps_its_errors_and_can_be_retried_with_the_valid_rows(org_a, admin_a):
    job = create(admin_a, org_a, ONE_BAD)
    assert (job.status, job.error_count, job.rows_valid) == ("rejected", 1, 1)
    assert job.errors[0]["line"] == 3 and "e-mail" in job.errors[0]["message"]
    assert not Mailbox.objects.exists()
    retry = import_job_retry_valid_rows(job=job, actor=admin_a)
    assert (retry.status, retry.rows_created, retry.import_valid_rows, retry.file.name) == (
        "succeeded",
        1,
        True,
        job.file.name,
    )
    job.refresh_from_db()
    assert job.status == "rejected"


def test_only_a_rejected_job_can_be_retried_and_only_by_its_administrators(org_a, admin_a, admin_b):
    job = create(admin_a, org_a, ONE_BAD)
    with pytest.raises(PermissionDenied):
        import_job_retry_valid_rows(job=job, actor=admin_b)
    done = create(admin_a, org_a)
    with pytest.raises(Exception, match="rejected"):
        import_job_retry_valid_rows(job=done, actor=admin_a)


def test_running_a_finished_job_again_changes_nothing(org_a, admin_a):
    job = create(admin_a, org_a)
    again = import_job_run(job_id=job.id)
    assert again.status == "succeeded"
    assert Event.objects.filter(action="inventory.imported").count() == 1


def test_an_unexpected_crash_fails_the_job_with_a_message_and_writes_nothing(org_a, admin_a, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(inventory, "event_record", crash)
    job = create(admin_a, org_a)
    assert job.status == ImportJob.Status.FAILED
    assert "disk on fire" in job.failure and "Nothing was imported" in job.failure
    assert not Mailbox.objects.exists()
    assert import_progress(job)["phase"] == "failed"


def test_a_permissions_job_sets_affinity_groups(org_a, officer):
    create(officer, org_a)
    job = create(
        officer, org_a, "mailbox,delegate,right\na@rj1.nhs.uk,b@rj1.nhs.uk,FullAccess\n", kind="permissions"
    )
    assert job.status == "succeeded"
    assert job.summary["largest_groups"][0]["mailboxes"] == 2


def test_progress_is_read_from_the_cache_the_import_writes(org_a, admin_a, monkeypatch):
    seen = []
    real_set = cache.set

    def record(key, value, timeout=None):
        seen.append(value["phase"])
        real_set(key, value, timeout)

    monkeypatch.setattr(reader, "BLOCK_BYTES", 32)
    monkeypatch.setattr(cache, "set", record)
    job = create(admin_a, org_a)
    assert {"queued", "reading", "saving", "finished"} <= set(seen)
    assert import_progress(job) == {
        "phase": "finished",
        "done": job.size_bytes,
        "total": job.size_bytes,
        "percent": 100,
    }


def test_progress_of_a_running_job_is_a_percentage(org_a, admin_a, settings):
    settings.INVENTORY_INLINE_MAX_BYTES = 0
    job = create(admin_a, org_a)  # queued: the on-commit callback never runs in this test
    cache.set(imports._progress_key(job.id), {"phase": "reading", "done": 50, "total": 200})
    assert import_progress(job) == {"phase": "reading", "done": 50, "total": 200, "percent": 25}
