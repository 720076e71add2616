"""Uploading an inventory (or permissions) file for an organisation."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from migrations_app.models import ImportJob, Mailbox

HEADER = b"email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"
GOOD = (
    HEADER
    + b"jane.doe@rj1.nhs.uk,Jane Doe,user,1288490188,41230,,\nreception@rj1.nhs.uk,Reception,shared,734003200,90211,front-desk,\n"
)
ONE_BAD = HEADER + b"jane.doe@rj1.nhs.uk,Jane Doe,user,1288490188,41230,,\nnot-an-address,Bad,user,10,1,,\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def upload(client, content: bytes, *, org="RJ1", kind="inventory", name="inventory.csv", valid_rows=False):
    data = {"file": SimpleUploadedFile(name, content, content_type="text/csv")}
    if valid_rows:
        data["import_valid_rows"] = "on"
    return client.post(f"/organisations/{org}/imports/{kind}/", data)


def test_the_page_lists_the_columns_and_links_the_example(client_for, admin_a, org_a):
    html = client_for(admin_a).get("/organisations/RJ1/imports/inventory/").content.decode()
    assert 'type="file"' in html
    assert "Import the valid rows even if some rows have errors" in html
    assert "<code>size_bytes</code>" in html
    assert "/imports/examples/inventory.csv" in html
    assert 'enctype="multipart/form-data"' in html


def test_a_good_file_is_imported_and_shows_the_job(client_for, admin_a, org_a):
    response = upload(client_for(admin_a), GOOD)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{job.pk}/"
    assert (
        job.status == ImportJob.Status.SUCCEEDED and job.organisation == org_a and job.created_by == admin_a
    )
    assert Mailbox.objects.filter(organisation=org_a).count() == 2


def test_a_file_with_a_bad_row_imports_nothing(client_for, admin_a, org_a):
    upload(client_for(admin_a), ONE_BAD)
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.REJECTED and job.error_count == 1
    assert not Mailbox.objects.exists()


def test_the_checkbox_imports_the_valid_rows(client_for, admin_a, org_a):
    upload(client_for(admin_a), ONE_BAD, valid_rows=True)
    job = ImportJob.objects.get()
    assert job.import_valid_rows
    assert Mailbox.objects.filter(email="jane.doe@rj1.nhs.uk").exists()


def test_no_file_is_an_error(client_for, admin_a, org_a):
    response = client_for(admin_a).post("/organisations/RJ1/imports/inventory/", {})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a CSV file" in html and 'href="#file"' in html
    assert not ImportJob.objects.exists()


def test_a_file_that_is_not_csv_is_refused(client_for, admin_a, org_a):
    response = upload(client_for(admin_a), b"\x89PNG", name="photo.png")
    assert response.status_code == 400
    assert "The selected file must be a CSV" in response.content.decode()


def test_an_empty_file_is_refused(client_for, admin_a, org_a):
    response = upload(client_for(admin_a), b"")
    assert response.status_code == 400
    assert "The selected file is empty" in response.content.decode()


def test_a_too_large_file_is_refused(client_for, admin_a, org_a, settings):
    settings.INVENTORY_UPLOAD_MAX_BYTES = 10
    response = upload(client_for(admin_a), GOOD)
    assert response.status_code == 400
    assert "The selected file must be smaller than" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(client_for, admin_a, org_a, settings):
    from migrations_app.request_limits import MULTIPART_OVERHEAD

    settings.INVENTORY_UPLOAD_MAX_BYTES = 10
    big = GOOD + b"x" * (MULTIPART_OVERHEAD + 100)
    response = upload(client_for(admin_a), big)
    assert response.status_code == 413 and not ImportJob.objects.exists()


def test_an_unknown_kind_is_404(client_for, admin_a, org_a):
    assert client_for(admin_a).get("/organisations/RJ1/imports/payroll/").status_code == 404


def test_another_trust_admin_gets_404(client_for, admin_b, org_a):
    client = client_for(admin_b)
    assert client.get("/organisations/RJ1/imports/inventory/").status_code == 404
    assert upload(client, GOOD).status_code == 404
    assert not ImportJob.objects.exists()


def test_a_viewer_cannot_upload(client_for, viewer, org_a):
    client = client_for(viewer)
    assert client.get("/organisations/RJ1/imports/inventory/").status_code == 403
    assert upload(client, GOOD).status_code == 403
    assert not ImportJob.objects.exists()


def test_the_programme_office_can_upload_for_anyone(client_for, officer, org_b):
    response = upload(client_for(officer), GOOD.replace(b"rj1", b"rrv"), org="RRV")
    assert response.status_code == 302
    assert ImportJob.objects.get().organisation == org_b


def test_anonymous_is_sent_to_sign_in(client, org_a):
    response = upload(client, GOOD)
    assert response.status_code == 302 and "/sign-in/" in response["Location"]


@pytest.mark.parametrize("kind", ["inventory", "permissions"])
def test_the_example_file_has_the_header(client_for, viewer, kind):
    response = client_for(viewer).get(f"/imports/examples/{kind}.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    lines = response.content.decode().splitlines()
    assert len(lines) == 3


def test_the_inventory_example_matches_what_the_import_expects(client_for, viewer):
    from migrations_app.services.imports import INVENTORY_OPTIONAL, INVENTORY_REQUIRED

    header = client_for(viewer).get("/imports/examples/inventory.csv").content.decode().splitlines()[0]
    assert set(header.split(",")) == set(INVENTORY_REQUIRED) | set(INVENTORY_OPTIONAL)


def test_a_permissions_file_groups_delegates_and_shows_the_largest_groups(
    client_for, admin_a, org_a, settings
):
    settings.PROGRAMME_EVENING_WAVE_MAILBOXES = 1
    client = client_for(admin_a)
    upload(client, GOOD)
    permissions = b"mailbox,delegate,right\nreception@rj1.nhs.uk,jane.doe@rj1.nhs.uk,FullAccess\n"
    response = upload(client, permissions, kind="permissions", name="permissions.csv")
    job = ImportJob.objects.get(kind="permissions")
    assert response["Location"] == f"/imports/{job.pk}/"
    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    groups = set(Mailbox.objects.filter(organisation=org_a).values_list("affinity_group", flat=True))
    assert len(groups) == 1 and "" not in groups
    html = client.get(response["Location"]).content.decode()
    assert "Largest affinity groups" in html and "Too big for an evening" in html


def test_the_inventory_export_uploads_again_unchanged(client_for, admin_a, org_a):
    client = client_for(admin_a)
    upload(
        client,
        b"email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"
        b"jane.doe@rj1.nhs.uk,Jane Doe,user,1288490188,41230,team-a,jane.doe@gstt.onmicrosoft.com\n"
        b"reception@rj1.nhs.uk,Reception,shared,734003200,90211,,\n",
    )
    before = list(Mailbox.objects.order_by("email").values())
    export = b"".join(client.get("/organisations/RJ1/mailboxes.csv").streaming_content)
    response = upload(client, export, name="RJ1-mailboxes.csv")
    job = ImportJob.objects.latest("pk")
    assert response.status_code == 302 and job.status == "succeeded", job.errors
    assert (job.rows_total, job.rows_unchanged, job.rows_created, job.rows_updated) == (2, 2, 0, 0)
    assert "state" in job.summary["ignored_columns"]
    assert list(Mailbox.objects.order_by("email").values()) == before
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert "Columns the portal does not use were ignored: ods_code" not in page  # ods_code is used
    assert "were ignored: state, wave, attempts" in page
