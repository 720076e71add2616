"""Support requests from the public form and tickets from a trust's service desk; what the rates count."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from migrations_app.models import Event, Mailbox, SupportRequest, Wave
from migrations_app.selectors.support import organisation_support, programme_support, wave_support
from migrations_app.services.support import support_request_submit, support_tickets_import, tickets_from_csv
from tests.notify_fixtures import wave_in

DAY = dt.timedelta(days=1)


def moved_wave(org, count=10, starts_in=-2 * DAY):
    wave, mailboxes = wave_in(org, starts_in=starts_in, mailboxes=count, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(state=Mailbox.State.MIGRATED)
    return wave, mailboxes


def ticket(mailbox, reference="INC001", when=None, category="sign_in"):
    return {
        "reference": reference,
        "address": mailbox.email.upper(),
        "opened_at": (when or timezone.now()).isoformat(),
        "category": category,
    }


@pytest.mark.django_db
def test_a_help_request_for_a_known_address_is_stored_for_its_organisation(org_a):
    _, (mailbox, *_) = moved_wave(org_a)
    request = support_request_submit(
        email=f" {mailbox.email.upper()} ", category="phone", description="No mail"
    )
    assert (request.organisation, request.mailbox, request.source) == (org_a, mailbox, "public")
    assert Event.objects.filter(action="support.requested", mailbox_id=mailbox.pk).exists()


@pytest.mark.django_db
def test_a_help_request_for_an_unknown_address_stores_nothing(org_a):
    assert support_request_submit(email="nobody@example.nhs.uk", category="other", description="") is None
    assert not SupportRequest.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_help_request_without_a_category(org_a):
    with pytest.raises(ValidationError):
        support_request_submit(email="a@example.nhs.uk", category="", description="")


@pytest.mark.django_db
def test_tickets_are_idempotent_by_reference(org_a, admin_a):
    _, (one, two, *_) = moved_wave(org_a)
    rows = [ticket(one, "INC001"), ticket(two, "INC002", category="Mail on my phone stopped working")]
    first = support_tickets_import(organisation=org_a, actor=admin_a, rows=rows)
    again = support_tickets_import(organisation=org_a, actor=admin_a, rows=rows)
    assert (first.created, first.already_known) == (2, 0)
    assert (again.created, again.already_known) == (0, 2)
    assert SupportRequest.objects.count() == 2
    assert SupportRequest.objects.get(reference="INC002").category == "phone"


@pytest.mark.django_db
def test_a_bad_ticket_rejects_the_batch_with_every_error(org_a, org_b, admin_a):
    _, (mine, *_) = moved_wave(org_a)
    _, (theirs, *_) = moved_wave(org_b)
    rows = [
        ticket(mine, "INC1"),
        ticket(theirs, "INC2"),
        {**ticket(mine, "INC3"), "category": "bad", "opened_at": "x"},
    ]
    with pytest.raises(ValidationError) as caught:
        support_tickets_import(organisation=org_a, actor=admin_a, rows=rows)
    assert [(e["line"], e["column"]) for e in caught.value.rows] == [
        (2, "address"),
        (3, "category"),
        (3, "opened_at"),
    ]
    assert not SupportRequest.objects.exists()


@pytest.mark.django_db
def test_a_trust_admin_cannot_import_tickets_for_another_organisation(org_b, admin_a):
    _, (theirs, *_) = moved_wave(org_b)
    with pytest.raises(PermissionDenied):
        support_tickets_import(organisation=org_b, actor=admin_a, rows=[ticket(theirs)])


@pytest.mark.django_db
def test_the_support_rate_counts_distinct_mailboxes_within_a_week_of_their_move(org_a, org_b, admin_a):
    wave, (one, two, *_) = moved_wave(org_a, count=10)
    now = timezone.now()
    support_tickets_import(
        organisation=org_a,
        actor=admin_a,
        rows=[
            ticket(one, "A1", now),
            ticket(one, "A2", now, category="phone"),  # same mailbox: counted once
            ticket(
                two, "A3", wave.ends_at + 8 * DAY if wave.ends_at + 8 * DAY < now else wave.starts_at - DAY
            ),
        ],
    )
    support_request_submit(email=two.email, category="missing", description="")
    rates = wave_support(wave=wave)
    assert (rates["moved"], rates["supported"], str(rates["rate"])) == (10, 2, "20.00")
    assert {c["category"] for c in rates["categories"]} == {"sign_in", "phone", "missing"}
    assert organisation_support(organisation=org_a)["rate"] == rates["rate"]
    assert programme_support()["supported"] == 2
    assert organisation_support(organisation=org_b)["rate"] is None


def test_a_ticket_csv_needs_its_columns():
    with pytest.raises(ValidationError):
        tickets_from_csv(b"ref,address\nINC1,a@b.nhs.uk\n")
    assert tickets_from_csv(
        b"\xef\xbb\xbfReference,Address,Opened_at,Category\nINC1,a@b.nhs.uk,2026-06-01,other\n"
    ) == [{"reference": "INC1", "address": "a@b.nhs.uk", "opened_at": "2026-06-01", "category": "other"}]


@pytest.mark.django_db
def test_the_programmes_rate_on_every_dashboard_is_computed_once_for_everyone(
    settings, org_a, django_assert_num_queries
):
    from django.core.cache import cache

    from migrations_app.selectors.support import programme_support_shared

    moved_wave(org_a, count=4)
    settings.PROGRAMME_SUPPORT_CACHE_SECONDS = 30
    cache.delete("programme-support")
    first = programme_support_shared()
    assert first == programme_support()
    with django_assert_num_queries(0):
        assert programme_support_shared() == first
    settings.PROGRAMME_SUPPORT_CACHE_SECONDS = 0  # not shared: read afresh
    with django_assert_num_queries(4):
        programme_support_shared()
    cache.delete("programme-support")
