import io

import pytest
from django.core.management import CommandError, call_command

from migrations_app.models import Mailbox
from tests.factories import MailboxFactory

HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group\n"


def command(name, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture
def csv_file(tmp_path):
    def write(text, name="inventory.csv"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def test_it_imports_for_one_organisation_and_prints_a_summary(org_a, csv_file):
    output = command("import_mailboxes", csv_file(HEADER + "a@rj1.nhs.uk,A,user,1,1,\n"), "--org", "rj1")
    assert "succeeded: 1 rows, 1 valid, 1 created" in output
    assert Mailbox.objects.get().organisation == org_a


def test_it_exits_non_zero_and_prints_the_errors_when_the_file_is_rejected(org_a, csv_file):
    path = csv_file(HEADER + "a@rj1.nhs.uk,A,user,1,1,\nbad,B,user,-1,1,\n")
    with pytest.raises(CommandError, match="Nothing was imported") as raised:
        command("import_mailboxes", path, "--org", "RJ1")
    assert raised.value.returncode == 1
    assert not Mailbox.objects.exists()


def test_it_lists_each_error_with_its_line(org_a, csv_file, capsys):
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_mailboxes", csv_file(HEADER + "bad,B,user,-1,1,\n"), "--org", "RJ1", stdout=out)
    assert "line 2 [email]: this is not a valid e-mail address (bad)" in out.getvalue()
    assert "line 2 [size_bytes]: the size is negative (bytes) (-1)" in out.getvalue()


def test_it_imports_the_valid_rows_when_asked(org_a, csv_file):
    path = csv_file(HEADER + "a@rj1.nhs.uk,A,user,1,1,\nbad,B,user,1,1,\n")
    output = command("import_mailboxes", path, "--org", "RJ1", "--import-valid-rows")
    assert "1 created" in output and "line 3 [email]" in output
    assert Mailbox.objects.count() == 1


def test_without_org_it_imports_a_national_file(org_a, org_b, csv_file):
    path = csv_file("ods_code," + HEADER + "RJ1,a@rj1.nhs.uk,A,user,1,1,\nRRV,b@rrv.nhs.uk,B,user,1,1,\n")
    command("import_mailboxes", path)
    assert dict(Mailbox.objects.values_list("email", "organisation__ods_code")) == {
        "a@rj1.nhs.uk": "RJ1",
        "b@rrv.nhs.uk": "RRV",
    }


def test_it_refuses_an_unknown_organisation_or_a_missing_file(db, csv_file, tmp_path):
    with pytest.raises(CommandError, match="No organisation"):
        command("import_mailboxes", csv_file(HEADER), "--org", "NOPE")
    with pytest.raises(CommandError, match="No such file"):
        command("import_mailboxes", str(tmp_path / "missing.csv"))


def test_import_permissions_prints_the_largest_groups_and_warns_about_oversized_ones(
    org_a, csv_file, settings
):
    settings.PROGRAMME_EVENING_WAVE_MAILBOXES = 1
    MailboxFactory(organisation=org_a, email="a@nhs.net")
    MailboxFactory(organisation=org_a, email="b@nhs.net")
    path = csv_file("mailbox,delegate,right\na@nhs.net,b@nhs.net,FullAccess\n", "permissions.csv")
    output = command("import_permissions", path, "--org", "RJ1")
    assert "2 mailboxes" in output
    assert "1 group(s) are larger than one evening wave" in output


def test_import_permissions_exits_non_zero_on_errors(org_a, csv_file):
    path = csv_file("mailbox,delegate,right\na@nhs.net,b@nhs.net,FullAccess\n", "permissions.csv")
    with pytest.raises(CommandError):
        command("import_permissions", path, "--org", "RJ1")
