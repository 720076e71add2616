"""The import job page, its htmx-polled progress, the retry with valid rows, and the imports list."""

import pytest
from django.core.files.base import ContentFile

from migrations_app.models import ImportJob, Mailbox

HEADER = b"email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"
ONE_BAD = (
    HEADER + b"jane.doe@rj1.nhs.uk,Jane Doe,user,1288490188,41230,,\nnot-an-address,Bad <b>,user,10,1,,\n"
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def make_job(organisation, *, status=ImportJob.Status.QUEUED, content=ONE_BAD, **fields) -> ImportJob:
    job = ImportJob(
        organisation=organisation, filename="inventory.csv", size_bytes=len(content), status=status
    )
    for name, value in fields.items():
        setattr(job, name, value)
    job.file.save("inventory.csv", ContentFile(content), save=False)
    job.save()
    return job


@pytest.fixture
def rejected_job(org_a, admin_a, client_for):
    """A real rejected upload, through the page."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    client_for(admin_a).post(
        "/organisations/RJ1/imports/inventory/", {"file": SimpleUploadedFile("inventory.csv", ONE_BAD)}
    )
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.REJECTED
    return job


def test_a_rejected_job_shows_its_errors_and_the_retry_button(client_for, admin_a, rejected_job):
    html = client_for(admin_a).get(f"/imports/{rejected_job.pk}/").content.decode()
    assert "Nothing was imported" in html
    assert "Rows with errors" in html
    assert "not-an-address" in html
    error = rejected_job.errors[0]
    assert error["line"] == 3 and error["column"] == "email"
    assert error["message"].replace("'", "&#39;")[:30] in html
    assert "Import the valid rows only" in html
    assert f'action="/imports/{rejected_job.pk}/retry/"' in html
    assert "hx-get" not in html  # finished: no polling


def test_error_values_are_escaped(client_for, officer, org_a):
    job = make_job(
        org_a,
        status=ImportJob.Status.REJECTED,
        error_count=1,
        errors=[{"line": 3, "column": "email", "value": "<script>x</script>", "message": "bad"}],
    )
    html = client_for(officer).get(f"/imports/{job.pk}/").content.decode()
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html


def test_retrying_imports_the_valid_rows_as_a_new_job(client_for, admin_a, rejected_job):
    response = client_for(admin_a).post(f"/imports/{rejected_job.pk}/retry/")
    retry = ImportJob.objects.exclude(pk=rejected_job.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{retry.pk}/"
    assert retry.status == ImportJob.Status.SUCCEEDED and retry.import_valid_rows
    assert Mailbox.objects.filter(email="jane.doe@rj1.nhs.uk").exists()


def test_retrying_a_job_that_is_not_rejected_says_why(client_for, admin_a, org_a):
    job = make_job(org_a, status=ImportJob.Status.SUCCEEDED)
    client = client_for(admin_a)
    response = client.post(f"/imports/{job.pk}/retry/", follow=True)
    assert "Only a rejected import can be retried" in response.content.decode()
    assert ImportJob.objects.count() == 1


def test_a_queued_job_polls_its_progress(client_for, admin_a, org_a):
    job = make_job(org_a)
    client = client_for(admin_a)
    html = client.get(f"/imports/{job.pk}/").content.decode()
    assert f'hx-get="/imports/{job.pk}/progress/"' in html and 'hx-trigger="every 2s"' in html
    fragment = client.get(f"/imports/{job.pk}/progress/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and "portal-progress" in body and 'hx-trigger="every 2s"' in body


def test_the_progress_fragment_shows_the_running_percentage(client_for, admin_a, org_a):
    from django.core.cache import cache

    job = make_job(org_a, status=ImportJob.Status.RUNNING)
    cache.set(f"portal:import-progress:{job.pk}", {"phase": "reading", "done": 50, "total": 200}, 60)
    body = client_for(admin_a).get(f"/imports/{job.pk}/progress/").content.decode()
    assert 'aria-valuenow="25"' in body and "25% done" in body


def test_the_progress_fragment_refreshes_the_page_when_finished(client_for, admin_a, org_a):
    job = make_job(org_a, status=ImportJob.Status.SUCCEEDED)
    response = client_for(admin_a).get(f"/imports/{job.pk}/progress/", headers={"HX-Request": "true"})
    assert response["HX-Refresh"] == "true"


def test_another_trust_admin_gets_404_everywhere(client_for, admin_b, rejected_job):
    client = client_for(admin_b)
    pk = rejected_job.pk
    assert client.get(f"/imports/{pk}/").status_code == 404
    assert client.get(f"/imports/{pk}/progress/").status_code == 404
    assert client.post(f"/imports/{pk}/retry/").status_code == 404
    assert ImportJob.objects.count() == 1


def test_a_viewer_sees_the_job_but_cannot_retry(client_for, viewer, rejected_job):
    client = client_for(viewer)
    html = client.get(f"/imports/{rejected_job.pk}/").content.decode()
    assert "Import the valid rows only" not in html
    assert client.post(f"/imports/{rejected_job.pk}/retry/").status_code == 403
    assert ImportJob.objects.count() == 1


def test_retry_needs_post(client_for, admin_a, rejected_job):
    assert client_for(admin_a).get(f"/imports/{rejected_job.pk}/retry/").status_code == 405


def test_the_list_is_scoped(client_for, admin_a, officer, org_a, org_b):
    mine = make_job(org_a, status=ImportJob.Status.SUCCEEDED, filename="mine.csv")
    theirs = make_job(org_b, status=ImportJob.Status.SUCCEEDED, filename="theirs.csv")
    html = client_for(admin_a).get("/imports/").content.decode()
    assert f"/imports/{mine.pk}/" in html and f"/imports/{theirs.pk}/" not in html
    html = client_for(officer).get("/imports/").content.decode()
    assert f"/imports/{mine.pk}/" in html and f"/imports/{theirs.pk}/" in html


def test_anonymous_is_sent_to_sign_in(client, org_a):
    job = make_job(org_a)
    for path in [f"/imports/{job.pk}/", f"/imports/{job.pk}/progress/", "/imports/"]:
        response = client.get(path)
        assert response.status_code == 302 and "/sign-in/" in response["Location"]
    assert client.post(f"/imports/{job.pk}/retry/").status_code == 302
