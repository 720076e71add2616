"""A complete inventory: the organisation's mailboxes its file leaves out are previewed, then retired once a
person confirms (those being moved are listed and left alone), on the page, through the API and the command."""

import io
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from migrations_app.models import Event, ImportJob, Mailbox
from migrations_app.services.readiness.leavers import leavers_in_file, leavers_retire
from tests.wave_fixtures import wave_with

M = Mailbox.State
HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group\n"


def _csv(*emails) -> bytes:
    return (HEADER + "".join(f"{e},{e},user,1,1,\n" for e in emails)).encode()


def _seed(org, *emails, state=M.INVENTORIED):
    return [Mailbox.objects.create(organisation=org, email=e, state=state) for e in emails]


def test_the_preview_lists_who_the_file_leaves_out_and_changes_nothing(org_a, org_b):
    _seed(org_a, "stays@rj1.nhs.uk", "left@rj1.nhs.uk")
    _seed(org_b, "other@rrv.nhs.uk")  # another organisation's: never a leaver of this one
    leavers = leavers_in_file(organisation=org_a, source=io.BytesIO(_csv("STAYS@rj1.nhs.uk ")))
    assert [email for _, email, _ in leavers.retirable] == ["left@rj1.nhs.uk"]
    assert not Mailbox.objects.filter(state=M.RETIRED).exists()


def test_confirming_retires_them_and_leaves_mailboxes_in_flight(org_a, admin_a):
    _seed(org_a, "stays@rj1.nhs.uk", "left@rj1.nhs.uk", "gone@rj1.nhs.uk")
    [moving] = _seed(org_a, "moving@rj1.nhs.uk")
    Mailbox.objects.filter(pk=moving.pk).update(wave=wave_with(org_a, status="running"), state=M.SYNCING)
    done = leavers_retire(
        organisation=org_a, actor=admin_a, source=io.BytesIO(_csv("stays@rj1.nhs.uk")), reason="leavers list"
    )
    assert sorted(e for _, e, _ in done.retirable) == ["gone@rj1.nhs.uk", "left@rj1.nhs.uk"]
    assert [e for _, e, _ in done.in_flight] == ["moving@rj1.nhs.uk"]
    assert set(Mailbox.objects.filter(state=M.RETIRED).values_list("email", flat=True)) == {
        "gone@rj1.nhs.uk",
        "left@rj1.nhs.uk",
    }
    assert Event.objects.filter(action="mailbox.retired", message="leavers list").count() == 2


def test_another_organisations_admin_cannot_retire_by_file(org_a, admin_b):
    from django.core.exceptions import PermissionDenied

    _seed(org_a, "left@rj1.nhs.uk")
    with pytest.raises(PermissionDenied):
        leavers_retire(organisation=org_a, actor=admin_b, source=io.BytesIO(_csv()), reason="x")
    assert not Mailbox.objects.filter(state=M.RETIRED).exists()


def test_on_the_page_upload_complete_then_confirm(client_for, org_a, admin_a):
    _seed(org_a, "stays@rj1.nhs.uk", "left@rj1.nhs.uk")
    client = client_for(admin_a)
    response = client.post(
        "/organisations/RJ1/imports/inventory/",
        {"file": SimpleUploadedFile("rj1.csv", _csv("stays@rj1.nhs.uk"), "text/csv"), "complete": "on"},
    )
    job = ImportJob.objects.get()
    assert response["Location"] == f"/imports/{job.pk}/?complete=1#leavers"
    page = client.get(response["Location"]).content.decode()
    assert "left@rj1.nhs.uk" in page.split('id="leavers-table"')[1] and "Retire these 1 mailbox(es)" in page
    assert not Mailbox.objects.filter(state=M.RETIRED).exists()
    client.post(f"/imports/{job.pk}/retire-leavers/", {"reason": "Not in the complete inventory rj1.csv"})
    assert list(Mailbox.objects.filter(state=M.RETIRED).values_list("email", flat=True)) == [
        "left@rj1.nhs.uk"
    ]


def test_the_command_lists_then_retires_with_a_reason(org_a, tmp_path):
    _seed(org_a, "stays@rj1.nhs.uk", "left@rj1.nhs.uk")
    path = tmp_path / "rj1.csv"
    path.write_bytes(_csv("stays@rj1.nhs.uk"))
    out = StringIO()
    call_command("import_mailboxes", str(path), "--org", "RJ1", "--complete", stdout=out, stderr=StringIO())
    assert (
        "1 mailbox(es) are not in this complete inventory:" in out.getvalue()
        and "left@rj1.nhs.uk" in out.getvalue()
    )
    assert not Mailbox.objects.filter(state=M.RETIRED).exists()
    out = StringIO()
    call_command(
        "import_mailboxes",
        str(path),
        "--org",
        "RJ1",
        "--complete",
        "--retire-leavers",
        "leavers",
        stdout=out,
        stderr=StringIO(),
    )
    assert "1 mailbox(es) retired" in out.getvalue()
    with pytest.raises(CommandError, match="--complete needs --org"):
        call_command("import_mailboxes", str(path), "--complete", stdout=StringIO(), stderr=StringIO())
