"""The digest to an organisation's contacts: one per contact, wave and moment, with the figures of its staff's
moves; shared, room and equipment mailboxes listed in it instead of emailed one by one."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.models import Contact, Mailbox, Moment, Notification, Wave
from migrations_app.services.notifications.scheduling import notifications_schedule
from migrations_app.services.notifications.sending import LogBackend, notifications_send_due
from tests.notify_fixtures import primary_contact, templates_on, wave_in

DAY = dt.timedelta(days=1)


def digests():
    return Notification.objects.filter(mailbox__isnull=True)


class Recorder(LogBackend):
    def __init__(self):
        self.items = []

    def send_many(self, items):
        self.items += items
        return super().send_many(items)


@pytest.mark.django_db
def test_each_contact_gets_one_digest_per_moment_after_the_owners(org_a, org_b):
    templates_on(Moment.FIRST, Moment.REMINDER, Moment.DIGEST)
    primary_contact(org_a)
    Contact.objects.create(
        organisation=org_a, role=Contact.Role.SERVICE_DESK, name="Desk", email="Desk@Example.nhs.uk"
    )
    # the same person in two roles gets one email
    Contact.objects.create(
        organisation=org_a, role=Contact.Role.TECHNICAL, name="Lead", email="IT.Lead@example.nhs.uk"
    )
    wave, mailboxes = wave_in(org_a, starts_in=13 * DAY, mailboxes=3)
    other = wave_in(org_b, starts_in=13 * DAY, mailboxes=2)[1]
    Mailbox.objects.filter(pk__in=[m.pk for m in other]).update(wave=wave)

    created = notifications_schedule().created
    assert created == {Moment.FIRST: 5, Moment.DIGEST: 3}
    assert sorted(digests().filter(organisation_id=org_a.pk).values_list("recipient", flat=True)) == [
        "desk@example.nhs.uk",
        "it.lead@example.nhs.uk",
    ]
    # org_b has no contact: kept as nobody to send to, never sent
    assert digests().get(organisation_id=org_b.pk).status == Notification.Status.NO_RECIPIENT
    assert notifications_schedule().total == 0  # at most once

    recorder = Recorder()
    assert notifications_send_due(sender=recorder).sent == 5 + 2
    # the owners first, then the digests (which count them as told)
    assert [i.moment for i in recorder.items][-2:] == [Moment.DIGEST, Moment.DIGEST]
    body = recorder.items[-1].rendered.body
    assert "3 mailboxes of yours move in this window" in body
    assert "3 owners told by email" in body
    assert "http://" in body and "/organisations/RJ1/" in body
    assert "(UK time)" in body and wave.name in body
    assert (
        recorder.items[-1].rendered.subject
        == f"Mailbox moves at {org_a.name}: your staff are told their mailboxes move"
    )

    # the reminder is another moment: one more digest each
    notifications_schedule(now=wave.starts_at - 3 * DAY)
    assert digests().filter(organisation_id=org_a.pk, moment=Moment.REMINDER).count() == 2


@pytest.mark.django_db
def test_shared_and_room_mailboxes_are_listed_in_the_digest_not_emailed(org_a):
    templates_on(Moment.FIRST, Moment.DIGEST)
    primary_contact(org_a)
    wave, staff = wave_in(org_a, starts_in=13 * DAY, mailboxes=2)
    shared = wave_in(org_a, starts_in=13 * DAY, mailboxes=1, kind=Mailbox.Kind.SHARED)[1]
    room = wave_in(org_a, starts_in=13 * DAY, mailboxes=1, kind=Mailbox.Kind.ROOM)[1]
    Mailbox.objects.filter(pk__in=[shared[0].pk, room[0].pk]).update(wave=wave)

    notifications_schedule()
    # nobody emailed about the shared and the room mailbox one by one
    assert not Notification.objects.filter(mailbox__in=[shared[0], room[0]]).exists()
    recorder = Recorder()
    notifications_send_due(sender=recorder)
    body = recorder.items[-1].rendered.body
    assert recorder.items[-1].recipient == "it.lead@example.nhs.uk"
    assert "2 shared, room and equipment mailboxes with no owner address" in body
    assert f"- {shared[0].email} (shared)" in body and f"- {room[0].email} (room)" in body


@pytest.mark.django_db
def test_after_the_window_the_digest_counts_what_moved_failed_and_was_carried(org_a):
    templates_on(Moment.AFTER, Moment.DELAYED, Moment.DIGEST)
    primary_contact(org_a)
    wave, (moved, failed, carried, other) = wave_in(org_a, starts_in=-DAY, mailboxes=4)
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    Mailbox.objects.filter(pk__in=[moved.pk, other.pk]).update(state=Mailbox.State.MIGRATED)
    Mailbox.objects.filter(pk=failed.pk).update(state=Mailbox.State.FAILED)
    Mailbox.objects.filter(pk=carried.pk).update(carried_over=True)
    wave.refresh_from_db()

    during = wave.starts_at + dt.timedelta(hours=1)
    notifications_schedule(now=during)
    assert not digests().exists()  # not while the window is open
    after = wave.ends_at + dt.timedelta(hours=1)
    assert notifications_schedule(now=after).created == {Moment.DIGEST: 1}
    assert notifications_schedule(now=after + DAY).total == 0
    recorder = Recorder()
    notifications_send_due(sender=recorder, now=timezone.now())
    body = recorder.items[-1].rendered.body
    assert "2 mailboxes moved" in body
    assert "1 mailbox failed and 1 was carried over" in body
    assert f"- {failed.email} (failed)" in body and f"- {carried.email} (carried over)" in body
    assert "told by email that their move is delayed" in body


@pytest.mark.django_db
def test_a_new_date_gets_its_own_digest_once(org_a):
    templates_on(Moment.FIRST, Moment.UPDATE, Moment.DIGEST)
    primary_contact(org_a)
    wave, mailboxes = wave_in(org_a, starts_in=13 * DAY, mailboxes=2)
    notifications_schedule()
    notifications_send_due(sender=Recorder())
    new_start = wave.starts_at + 7 * DAY
    Wave.objects.filter(pk=wave.pk).update(starts_at=new_start, ends_at=new_start + dt.timedelta(hours=12))

    assert notifications_schedule().created == {Moment.UPDATE: 2, Moment.DIGEST: 1}
    assert notifications_schedule().total == 0
    recorder = Recorder()
    notifications_send_due(sender=recorder)
    digest = recorder.items[-1]
    assert digest.recipient == "it.lead@example.nhs.uk"
    assert digest.rendered.subject.endswith("a new date for your staff's moves")
    assert "2 owners told by email about it" in digest.rendered.body
