"""The direct-COPY path (PostgreSQL): an import into an empty organisation, or a national file into an
empty mailbox table, is COPYed straight into the mailbox table; anything that collides after all goes
through the staging path (docs/adr/005)."""

import io
import logging

import pytest
from django.db import connection, transaction

from migrations_app.models import Event, ImportJob, Mailbox
from migrations_app.services import imports
from migrations_app.services.imports import inventory, inventory_import, national
from tests.factories import MailboxFactory

HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"
TWO = HEADER + "a@rj1.nhs.uk,A,user,10,2,grp,a@t.example\nb@rj1.nhs.uk,B,shared,20,4,,\n"


def run(text, organisation, actor=None, source=None, **kwargs):
    source = source or io.BytesIO(text.encode("utf-8"))
    return inventory_import(source=source, organisation=organisation, actor=actor, **kwargs)


def test_an_empty_organisation_is_copied_directly(postgres, org_a, caplog):
    with caplog.at_level(logging.INFO, logger=imports.__name__):
        result = run(TWO, org_a)
    assert result.summary["path"] == "direct-copy"
    assert "copied into the mailbox table" in caplog.text
    assert (result.status, result.rows_total, result.rows_valid) == (ImportJob.Status.SUCCEEDED, 2, 2)
    assert (result.created, result.updated, result.unchanged, result.error_count) == (2, 0, 0, 0)
    a = Mailbox.objects.get(email="a@rj1.nhs.uk")
    assert (a.organisation, a.display_name, a.kind, a.size_bytes, a.item_count) == (org_a, "A", "user", 10, 2)
    assert (a.affinity_group, a.target_upn, a.source_identity) == ("grp", "a@t.example", "")
    assert (a.state, a.attempts, a.wave) == (Mailbox.State.INVENTORIED, 0, None)
    assert a.created_at is not None and a.updated_at == a.created_at
    [event] = Event.objects.filter(action="inventory.imported")
    assert (event.data["created"], event.data["updated"], event.data["unchanged"]) == (2, 0, 0)


def test_a_national_file_into_an_empty_table_is_copied_directly(postgres, org_a, org_b):
    result = run(
        "ods_code," + HEADER + "RJ1,a@rj1.nhs.uk,A,user,1,1,,\nrrv,b@rrv.nhs.uk,B,user,1,1,,\n", None
    )
    assert (result.summary["path"], result.created) == ("direct-copy", 2)
    assert dict(Mailbox.objects.values_list("email", "organisation__ods_code")) == {
        "a@rj1.nhs.uk": "RJ1",
        "b@rrv.nhs.uk": "RRV",
    }


def test_a_national_file_goes_through_staging_once_the_table_has_mailboxes(postgres, org_a, org_b):
    MailboxFactory(organisation=org_b, email="old@rrv.nhs.uk")
    result = run("ods_code," + HEADER + "RJ1,a@rj1.nhs.uk,A,user,1,1,,\n", None)
    assert (result.summary["path"], result.created) == ("staging", 1)


def test_a_re_import_goes_through_staging_and_changes_nothing(postgres, org_a):
    assert run(TWO, org_a).summary["path"] == "direct-copy"
    before = dict(Mailbox.objects.values_list("email", "updated_at"))
    result = run(TWO, org_a)
    assert result.summary["path"] == "staging"
    assert (result.created, result.updated, result.unchanged) == (0, 0, 2)
    assert dict(Mailbox.objects.values_list("email", "updated_at")) == before


def test_a_file_with_errors_is_rolled_back_and_reported(postgres, org_a):
    result = run(TWO + "bad,B,user,1,1,,\nb@rj1.nhs.uk,B again,user,1,1,,\n", org_a)
    assert (result.summary["path"], result.status) == ("direct-copy", ImportJob.Status.REJECTED)
    assert [(e.line, e.column) for e in result.errors] == [(4, "email"), (5, "email")]
    assert (result.rows_total, result.rows_valid, result.created, result.error_count) == (4, 2, 0, 2)
    assert not Mailbox.objects.exists()
    assert list(Event.objects.values_list("action", flat=True)) == ["inventory.rejected"]


def test_the_valid_rows_of_a_file_with_errors_are_copied_when_asked(postgres, org_a):
    result = run(TWO + "bad,B,user,1,1,,\n", org_a, import_valid_rows=True)
    assert (result.summary["path"], result.status) == ("direct-copy", ImportJob.Status.SUCCEEDED)
    assert (result.rows_valid, result.created, result.error_count) == (2, 2, 1)
    assert sorted(Mailbox.objects.values_list("email", flat=True)) == ["a@rj1.nhs.uk", "b@rj1.nhs.uk"]


def test_another_organisations_address_falls_back_to_staging_and_is_reported(postgres, org_a, org_b, admin_a):
    # org_a has no mailboxes, so the COPY is tried, but the table does: the COPY fails on the unique
    # address and the staging path reads the file again.
    MailboxFactory(organisation=org_b, email="shared@nhs.net", size_bytes=5)
    # The file is read from where the source stood, not from byte 0, when it is read again.
    source = io.BytesIO(b"ignored,\n" + (TWO + "shared@nhs.net,Mine,user,1,1,,\n").encode())
    source.seek(len(b"ignored,\n"))
    result = run(None, org_a, actor=admin_a, source=source)
    assert (result.summary["path"], result.status) == ("staging", ImportJob.Status.REJECTED)
    [error] = result.errors
    assert (error.line, error.column, error.value) == (4, "email", "shared@nhs.net")
    assert "another organisation" in error.message
    assert (result.rows_total, result.rows_valid, result.created) == (3, 2, 0)
    assert list(Mailbox.objects.values_list("email", "organisation", "size_bytes")) == [
        ("shared@nhs.net", org_b.id, 5)
    ]


def test_the_fallback_imports_the_valid_rows_when_asked(postgres, org_a, org_b):
    MailboxFactory(organisation=org_b, email="shared@nhs.net", size_bytes=5)
    result = run(TWO + "shared@nhs.net,Mine,user,1,1,,\n", org_a, import_valid_rows=True)
    assert (result.summary["path"], result.status) == ("staging", ImportJob.Status.SUCCEEDED)
    assert (result.created, result.error_count) == (2, 1)
    assert Mailbox.objects.filter(organisation=org_a).count() == 2
    assert Mailbox.objects.get(email="shared@nhs.net").organisation == org_b


def test_a_source_that_cannot_be_read_again_goes_through_staging(postgres, org_a):
    class Stream(io.BytesIO):
        def seekable(self):
            return False

    result = run(None, org_a, source=Stream(TWO.encode()))
    assert (result.summary["path"], result.created) == ("staging", 2)


def test_a_crash_after_the_copy_leaves_nothing_behind(postgres, org_a, monkeypatch):
    def crash(**kwargs):
        assert Mailbox.objects.count() == 2  # the rows were copied by now
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(inventory, "event_record", crash)
    with pytest.raises(RuntimeError):
        run(TWO, org_a)
    assert not Mailbox.objects.exists()


def test_the_summary_names_the_path_on_either_database(db, org_a):
    result = run(TWO, org_a)
    assert result.summary["path"] == ("direct-copy" if connection.vendor == "postgresql" else "staging")
    assert result.created == 2


def _mailbox_schema(connection) -> tuple[set, set]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            [imports.MAILBOX],
        )
        indexes = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass",
            [imports.MAILBOX],
        )
        constraints = set(cursor.fetchall())
    return indexes, constraints


NATIONAL = "ods_code," + HEADER + "RJ1,a@rj1.nhs.uk,A,user,1,1,,\nRRV,b@rrv.nhs.uk,B,user,1,1,,\n"


def test_a_large_national_load_builds_the_indexes_afterwards_exactly_as_they_were(
    postgres, org_a, org_b, monkeypatch, caplog
):
    before = _mailbox_schema(postgres)
    monkeypatch.setattr(national, "DEFER_INDEXES_MIN_BYTES", 0)
    with caplog.at_level(logging.INFO, logger=imports.__name__):
        result = run(NATIONAL, None)
    assert (result.status, result.created) == (ImportJob.Status.SUCCEEDED, 2)
    assert "mailbox indexes built" in caplog.text
    after = _mailbox_schema(postgres)
    assert (before[0] - after[0], after[0] - before[0]) == (set(), set())
    assert (before[1] - after[1], after[1] - before[1]) == (set(), set())
    # the planner has the loaded table's statistics at once: its column statistics know these two
    # organisations, made in this test's transaction (only an ANALYZE inside it can have seen them)
    with postgres.cursor() as cursor:
        cursor.execute(
            "SELECT histogram_bounds::text, most_common_vals::text FROM pg_stats "
            "WHERE tablename = %s AND attname = 'organisation_id'",
            [Mailbox._meta.db_table],
        )
        seen = " ".join(value or "" for value in cursor.fetchone() or ())
    assert str(org_a.pk) in seen and str(org_b.pk) in seen
    # the rebuilt unique constraint and foreign key still hold
    with pytest.raises(Exception, match="unique|duplicate"), transaction.atomic():
        MailboxFactory(organisation=org_a, email="a@rj1.nhs.uk")
    with pytest.raises(Exception, match="foreign key"), transaction.atomic():
        Mailbox.objects.create(organisation_id=999_999, email="ghost@rj1.nhs.uk")
        postgres.check_constraints()


def test_a_rejected_large_national_load_leaves_the_indexes_in_place(postgres, org_a, org_b, monkeypatch):
    before = _mailbox_schema(postgres)
    monkeypatch.setattr(national, "DEFER_INDEXES_MIN_BYTES", 0)
    result = run(NATIONAL + "RJ1,not-an-address,C,user,1,1,,\n", None)
    assert result.status == ImportJob.Status.REJECTED
    assert not Mailbox.objects.exists()
    assert _mailbox_schema(postgres) == before


def test_a_small_national_load_keeps_its_indexes_while_loading(postgres, org_a, org_b, caplog):
    with caplog.at_level(logging.INFO, logger=imports.__name__):
        assert run(NATIONAL, None).created == 2
    assert "mailbox indexes built" not in caplog.text
