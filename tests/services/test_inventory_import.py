import io

import pytest

from migrations_app.models import Event, ImportJob, Mailbox
from migrations_app.services.imports import MAX_REPORTED_ERRORS, inventory, inventory_import, reader
from tests.factories import MailboxFactory, OrganisationFactory

HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"


def run(text, organisation, actor=None, **kwargs):
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    return inventory_import(source=io.BytesIO(data), organisation=organisation, actor=actor, **kwargs)


def messages(result):
    return [(e.line, e.message) for e in result.errors]


def test_it_creates_mailboxes_in_the_inventoried_state(org_a):
    result = run(
        HEADER
        + "jane.doe@rj1.nhs.uk,Jane Doe,user,1288490188,41230,,jane.doe@gstt.onmicrosoft.com\n"
        + "reception@rj1.nhs.uk,Reception,shared,734003200,90211,front-desk,\n",
        org_a,
    )
    assert result.status == ImportJob.Status.SUCCEEDED
    assert (result.rows_total, result.rows_valid, result.created, result.updated) == (2, 2, 2, 0)
    jane = Mailbox.objects.get(email="jane.doe@rj1.nhs.uk")
    assert jane.organisation == org_a
    assert jane.state == Mailbox.State.INVENTORIED
    assert (jane.size_bytes, jane.item_count, jane.target_upn) == (
        1288490188,
        41230,
        "jane.doe@gstt.onmicrosoft.com",
    )
    reception = Mailbox.objects.get(email="reception@rj1.nhs.uk")
    assert (reception.kind, reception.affinity_group) == ("shared", "front-desk")


def test_it_trims_values_and_lower_cases_the_address(org_a):
    run(HEADER + "  Jane.DOE@RJ1.nhs.uk ,  Jane Doe  , user , 10 , 2 , grp ,\n", org_a)
    jane = Mailbox.objects.get()
    assert (jane.email, jane.display_name, jane.size_bytes, jane.affinity_group) == (
        "jane.doe@rj1.nhs.uk",
        "Jane Doe",
        10,
        "grp",
    )


def test_it_accepts_a_utf8_bom_and_header_names_in_any_case_with_spaces_or_hyphens(org_a):
    header = "\ufeffEmail,Display Name,KIND,size-bytes,Item Count,affinity group\n"
    result = run(header + "a@rj1.nhs.uk,Zoë,user,1,1,\n", org_a)
    assert result.status == "succeeded"
    assert Mailbox.objects.get().display_name == "Zoë"


def test_it_accepts_exchange_kind_names_and_size_text(org_a):
    result = run(
        HEADER
        + 'a@rj1.nhs.uk,A,UserMailbox,"1.2 GB (1,288,490,188 bytes)","41,230",,\n'
        + "b@rj1.nhs.uk,B,SharedMailbox,5,5,,\n"
        + "c@rj1.nhs.uk,C,roommailbox,5,5,,\n"
        + "d@rj1.nhs.uk,D,EquipmentMailbox,5,5,,\n",
        org_a,
    )
    assert result.status == "succeeded", result.errors
    kinds = dict(Mailbox.objects.values_list("email", "kind"))
    assert kinds == {
        "a@rj1.nhs.uk": "user",
        "b@rj1.nhs.uk": "shared",
        "c@rj1.nhs.uk": "room",
        "d@rj1.nhs.uk": "equipment",
    }
    a = Mailbox.objects.get(email="a@rj1.nhs.uk")
    assert (a.size_bytes, a.item_count) == (1288490188, 41230)


def test_it_skips_blank_lines_and_keeps_counting_physical_lines(org_a):
    result = run(HEADER + "\n" + "a@rj1.nhs.uk,A,user,1,1,,\n" + "\r\n" + "bad,B,user,1,1,,\n\n", org_a)
    assert result.rows_total == 2
    assert messages(result) == [(5, "this is not a valid e-mail address")]


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("not-an-address,A,user,1,1,,", "email", "not a valid e-mail address"),
        (",A,user,1,1,,", "email", "the address is empty"),
        ("a@rj1.nhs.uk,A,mailbox,1,1,,", "kind", "unknown kind"),
        ("a@rj1.nhs.uk,A,user,-5,1,,", "size_bytes", "the size is negative"),
        ("a@rj1.nhs.uk,A,user,lots,1,,", "size_bytes", "the size is not a whole number"),
        ("a@rj1.nhs.uk,A,user,1.5,1,,", "size_bytes", "the size is not a whole number"),
        ("a@rj1.nhs.uk,A,user,1,-1,,", "item_count", "the item count is negative"),
        ("a@rj1.nhs.uk,A,user,1,many,,", "item_count", "the item count is not a whole number"),
        ("a@rj1.nhs.uk,A,user,1,1,,not an address", "target_upn", "target UPN is not a valid address"),
        ("a@rj1.nhs.uk,A,user,1,1,", "", "expected 7 fields as in the header, found 6"),
        ("a@rj1.nhs.uk,A,user,1,1,,,extra", "", "expected 7 fields as in the header, found 8"),
        ("a@rj1.nhs.uk," + "x" * 257 + ",user,1,1,,", "display_name", "longer than 256"),
        ("a@rj1.nhs.uk,A,user,99999999999999999999,1,,", "size_bytes", "the size is too large"),
    ],
)
def test_it_reports_each_bad_row_with_its_line_and_reason(org_a, row, column, reason):
    result = run(HEADER + "ok@rj1.nhs.uk,Fine,user,1,1,,\n" + row + "\n", org_a)
    assert result.status == ImportJob.Status.REJECTED
    assert result.error_count == 1
    [error] = result.errors
    assert (error.line, error.column) == (3, column)
    assert reason in error.message
    assert not Mailbox.objects.exists()


def test_it_reports_a_duplicate_address_with_its_first_line(org_a):
    result = run(
        HEADER
        + "a@rj1.nhs.uk,A,user,1,1,,\n"
        + "b@rj1.nhs.uk,B,user,1,1,,\n"
        + "A@RJ1.NHS.UK,A again,user,1,1,,\n",
        org_a,
    )
    assert messages(result) == [(4, "duplicate address: it first appeared on line 2")]


def test_it_reports_an_undecodable_line_and_suggests_csv_utf8(org_a):
    data = (HEADER + "a@rj1.nhs.uk,A,user,1,1,,\n").encode() + b"b@rj1.nhs.uk,Andr\xe9,user,1,1,,\n"
    result = run(data, org_a)
    [error] = result.errors
    assert error.line == 3
    assert "not UTF-8" in error.message and "CSV UTF-8" in error.message


def test_it_reports_undecodable_lines_in_a_large_file_with_the_right_numbers(org_a, monkeypatch):
    monkeypatch.setattr(reader, "BLOCK_BYTES", 64)  # many blocks, the bad line in a later one
    rows = [f"p{n}@rj1.nhs.uk,P,user,1,1,," for n in range(40)]
    data = (HEADER + "\n".join(rows[:30]) + "\n").encode() + b"bad@rj1.nhs.uk,\xff,user,1,1,,\n"
    data += ("\n".join(rows[30:]) + "\n").encode()
    result = run(data, org_a)
    assert [e.line for e in result.errors] == [32]
    assert result.rows_total == 41


def test_it_rejects_a_file_with_missing_columns_naming_them_and_the_columns_it_ignores(org_a):
    result = run("email,display_name,kind,sizes,item_count\na@rj1.nhs.uk,A,user,1,1\n", org_a)
    assert result.status == "rejected"
    [error] = result.errors
    assert error.line == 1
    assert "missing columns: size_bytes." in error.message
    assert not Mailbox.objects.exists()


def test_optional_columns_are_optional_and_unknown_ones_ignored_with_a_warning(org_a):
    text = (
        "email,display_name,kind,size_bytes,item_count,Database,ProhibitSendQuota\n"
        "a@rj1.nhs.uk,A,user,1,1,DB01,Unlimited\n"
    )
    result = run(text, org_a)
    assert result.status == "succeeded" and result.created == 1
    assert result.summary["ignored_columns"] == ["Database", "ProhibitSendQuota"]
    assert Mailbox.objects.get().affinity_group == ""


def test_a_nul_byte_is_reported_as_a_nul_byte_at_its_line(org_a):
    result = run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nb@rj1.nhs.uk,B\x00,user,1,1,,\n", org_a)
    assert result.status == "rejected"
    assert [(e.line, "NUL byte" in e.message, "UTF-8 text" in e.message) for e in result.errors] == [
        (3, True, False)
    ]
    header_nul = run(b"e\x00m\x00a\x00i\x00l\x00\n", org_a)  # UTF-16
    assert header_nul.errors[0].line == 1 and "NUL byte" in header_nul.errors[0].message


def test_it_rejects_an_empty_file(org_a):
    result = run(b"", org_a)
    assert result.status == "rejected"
    assert "empty" in result.errors[0].message


def test_it_rejects_a_file_that_is_not_csv_text(org_a):
    result = run(b"PK\x03\x04\x14\x06\x08!\xff\xfe binary", org_a)
    assert result.status == "rejected"
    assert result.errors[0].line == 1
    assert "not UTF-8" in result.errors[0].message


def test_it_hints_at_semicolon_separated_files(org_a):
    result = run("email;display_name;kind;size_bytes;item_count;affinity_group\n", org_a)
    assert "separated by ';'" in result.errors[0].message


def test_a_file_with_errors_imports_nothing(org_a):
    result = run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nbad,B,user,1,1,,\n", org_a)
    assert result.status == "rejected"
    assert (result.rows_total, result.rows_valid, result.created) == (2, 1, 0)
    assert not Mailbox.objects.exists()


def test_it_imports_the_valid_rows_when_asked(org_a):
    result = run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nbad,B,user,1,1,,\n", org_a, import_valid_rows=True)
    assert result.status == "succeeded"
    assert (result.rows_valid, result.created, result.error_count) == (1, 1, 1)
    assert list(Mailbox.objects.values_list("email", flat=True)) == ["a@rj1.nhs.uk"]


def test_a_crash_half_way_leaves_nothing_half_written(org_a, monkeypatch):
    MailboxFactory(organisation=org_a, email="old@rj1.nhs.uk", size_bytes=1)

    def crash(**kwargs):
        assert Mailbox.objects.filter(email="new@rj1.nhs.uk").exists()  # the rows were written by now
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(inventory, "event_record", crash)
    with pytest.raises(RuntimeError):
        run(HEADER + "old@rj1.nhs.uk,Old,user,999,1,,\nnew@rj1.nhs.uk,New,user,1,1,,\n", org_a)
    assert list(Mailbox.objects.values_list("email", "size_bytes")) == [("old@rj1.nhs.uk", 1)]


def test_re_importing_the_same_file_changes_nothing(org_a):
    text = HEADER + "a@rj1.nhs.uk,A,user,1,1,g,\nb@rj1.nhs.uk,B,shared,2,2,,b@x.onmicrosoft.com\n"
    run(text, org_a)
    before = dict(Mailbox.objects.values_list("email", "updated_at"))
    result = run(text, org_a)
    assert (result.created, result.updated, result.unchanged) == (0, 0, 2)
    assert dict(Mailbox.objects.values_list("email", "updated_at")) == before  # no row rewritten


def test_a_re_import_leaves_unchanged_rows_untouched_not_even_locked(postgres, org_a):
    """Only the changed rows are written: PostgreSQL's ON CONFLICT DO UPDATE ... WHERE locked every row it
    left alone (xmax set), which on a national re-import wrote to the heap page of every mailbox."""
    run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nb@rj1.nhs.uk,B,user,2,2,,\n", org_a)
    result = run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nb@rj1.nhs.uk,Bee,user,2,2,,\n", org_a)
    assert (result.updated, result.unchanged) == (1, 1)
    with postgres.cursor() as cursor:
        cursor.execute("SELECT email, xmax::text FROM migrations_app_mailbox ORDER BY email")
        xmax = dict(cursor.fetchall())
    assert xmax["a@rj1.nhs.uk"] == "0"  # neither updated nor locked
    assert Mailbox.objects.get(email="b@rj1.nhs.uk").display_name == "Bee"


def test_it_updates_changed_rows_and_counts_them(org_a):
    run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nb@rj1.nhs.uk,B,user,2,2,,\n", org_a)
    result = run(
        HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nb@rj1.nhs.uk,Bee,room,20,3,,\nc@rj1.nhs.uk,C,user,1,1,,\n", org_a
    )
    assert (result.created, result.updated, result.unchanged) == (1, 1, 1)
    b = Mailbox.objects.get(email="b@rj1.nhs.uk")
    assert (b.display_name, b.kind, b.size_bytes, b.item_count) == ("Bee", "room", 20, 3)


def test_a_blank_affinity_group_or_target_keeps_the_one_already_set(org_a):
    MailboxFactory(
        organisation=org_a, email="a@rj1.nhs.uk", affinity_group="perm-1", target_upn="a@t.example"
    )
    result = run(HEADER + "a@rj1.nhs.uk,Person 1,user,1000000,1000,,\n", org_a)
    a = Mailbox.objects.get()
    assert (a.affinity_group, a.target_upn) == ("perm-1", "a@t.example")
    assert result.unchanged == 1 - result.updated


def test_it_refuses_an_address_owned_by_another_organisation_without_naming_it_to_a_trust_admin(
    org_a, org_b, admin_a
):
    MailboxFactory(organisation=org_b, email="shared@nhs.net", size_bytes=5)
    result = run(HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nshared@nhs.net,Mine,user,1,1,,\n", org_a, actor=admin_a)
    assert result.status == "rejected"
    [error] = result.errors
    assert error.line == 3
    assert "another organisation" in error.message
    assert "RRV" not in error.message and org_b.name not in error.message
    assert Mailbox.objects.get(email="shared@nhs.net").organisation == org_b
    assert not Mailbox.objects.filter(email="a@rj1.nhs.uk").exists()


def test_it_names_the_owner_to_the_programme_office(org_a, org_b, officer):
    MailboxFactory(organisation=org_b, email="shared@nhs.net")
    result = run(HEADER + "shared@nhs.net,Mine,user,1,1,,\n", org_a, actor=officer)
    assert "RRV" in result.errors[0].message


def test_valid_rows_never_take_over_another_organisations_address(org_a, org_b, admin_a):
    MailboxFactory(organisation=org_b, email="shared@nhs.net", size_bytes=5)
    result = run(
        HEADER + "a@rj1.nhs.uk,A,user,1,1,,\nshared@nhs.net,Mine,user,1,1,,\n",
        org_a,
        actor=admin_a,
        import_valid_rows=True,
    )
    assert (result.status, result.rows_valid, result.created, result.error_count) == ("succeeded", 1, 1, 1)
    shared = Mailbox.objects.get(email="shared@nhs.net")
    assert (shared.organisation, shared.size_bytes, shared.display_name) == (org_b, 5, shared.display_name)


def test_a_national_file_names_each_rows_organisation(org_a, org_b):
    result = run(
        "ods_code,"
        + HEADER
        + "rj1,a@rj1.nhs.uk,A,user,1,1,,\nRRV,b@rrv.nhs.uk,B,user,1,1,,\nZZZ9,c@x.nhs.uk,C,user,1,1,,\n",
        None,
    )
    assert messages(result) == [(4, "unknown ODS code")]
    result = run(
        "ods_code," + HEADER + "rj1,a@rj1.nhs.uk,A,user,1,1,,\nRRV,b@rrv.nhs.uk,B,user,1,1,,\n", None
    )
    assert result.created == 2
    assert dict(Mailbox.objects.values_list("email", "organisation__ods_code")) == {
        "a@rj1.nhs.uk": "RJ1",
        "b@rrv.nhs.uk": "RRV",
    }


def test_a_national_file_needs_an_ods_code_column(db):
    result = run(HEADER, None)
    assert "missing columns: ods_code" in result.errors[0].message


def test_it_records_one_event_per_import_with_the_counts(org_a, admin_a):
    run(HEADER + "".join(f"p{n}@rj1.nhs.uk,P,user,1,1,,\n" for n in range(5)), org_a, actor=admin_a)
    [event] = Event.objects.filter(action="inventory.imported")
    assert (event.action, event.actor, event.organisation) == ("inventory.imported", admin_a, org_a)
    assert event.data["created"] == 5 and event.data["rows_total"] == 5


def test_it_counts_every_error_but_reports_at_most_the_cap(org_a, monkeypatch):
    monkeypatch.setattr(reader, "MAX_REPORTED_ERRORS", 3)
    result = run(HEADER + "bad,B,user,1,1,,\n" * 5, org_a)
    assert (result.error_count, len(result.errors)) == (5, 3)
    assert MAX_REPORTED_ERRORS == 10_000


def test_it_reports_progress_in_bytes(org_a, monkeypatch):
    monkeypatch.setattr(reader, "BLOCK_BYTES", 100)
    data = (HEADER + "".join(f"p{n}@rj1.nhs.uk,P,user,1,1,,\n" for n in range(50))).encode()
    calls = []
    run(data, org_a, progress=lambda done, total: calls.append((done, total)), total_bytes=len(data))
    assert len(calls) > 5
    assert calls[-1] == (len(data), len(data))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_the_same_file_imports_the_same_on_sqlite_and_postgres_across_many_rows(db):
    org = OrganisationFactory(ods_code="A81001")
    rows = "".join(f"user{n}@a81001.nhs.uk,User {n},user,{n},{n},,\n" for n in range(12_000))
    result = run(HEADER + rows, org)
    assert result.created == 12_000
    assert Mailbox.objects.filter(organisation=org).count() == 12_000
