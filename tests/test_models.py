import pytest
from django.db import DataError, IntegrityError, transaction

from migrations_app.models import Endpoint, Event
from tests.factories import MailboxFactory, OrganisationFactory


@pytest.mark.parametrize("code", ["rj1", "RJ-1", "", "ABCDEFGHIJ", "RJ 1"])
def test_it_refuses_a_malformed_ods_code(db, code):
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        OrganisationFactory(ods_code=code)


@pytest.mark.parametrize("code", ["RJ1", "RH802", "A81001", "X26", "QE1"])
def test_it_accepts_real_ods_code_shapes(db, code):
    assert OrganisationFactory(ods_code=code).pk


def test_it_refuses_an_address_that_is_not_lower_case(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        MailboxFactory(email="Jane.Doe@example.nhs.uk")


def test_it_refuses_the_same_address_twice(db):
    MailboxFactory(email="jane.doe@example.nhs.uk")
    with pytest.raises(IntegrityError), transaction.atomic():
        MailboxFactory(email="jane.doe@example.nhs.uk")


def test_it_refuses_a_negative_size(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        MailboxFactory(size_bytes=-1)


def test_endpoint_secret_is_encrypted_at_rest(db):
    endpoint = Endpoint.objects.create(name="src", kind="imap", role="source", secret="hunter2-very-secret")
    with transaction.atomic():
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT secret FROM migrations_app_endpoint WHERE id = %s", [endpoint.pk])
            stored = cursor.fetchone()[0]
    assert "hunter2" not in stored
    assert Endpoint.objects.get(pk=endpoint.pk).secret == "hunter2-very-secret"


def test_event_rows_cannot_be_changed_deleted_or_truncated_on_postgres(postgres):
    event = Event.objects.create(action="test.happened", subject="x")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        Event.objects.filter(pk=event.pk).update(message="rewritten")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        Event.objects.filter(pk=event.pk).delete()
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), postgres.cursor() as cursor:
        cursor.execute("TRUNCATE migrations_app_event")
    assert Event.objects.get(pk=event.pk).message == ""


def test_choice_labels_are_the_fields_own_and_an_unknown_value_shows_as_itself():
    from migrations_app.models import Mailbox, Organisation, Wave

    for state, label in Mailbox.State.choices:
        assert Mailbox(state=state).get_state_display() == label
    assert Mailbox(state="not-a-state").get_state_display() == "not-a-state"
    assert Mailbox(kind=Mailbox.Kind.SHARED).get_kind_display() == Mailbox.Kind.SHARED.label
    assert Wave(status=Wave.Status.RUNNING).get_status_display() == Wave.Status.RUNNING.label
    assert Organisation(kind=Organisation.Kind.TRUST).get_kind_display() == Organisation.Kind.TRUST.label
