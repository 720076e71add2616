"""A real Celery worker schedules and sends a wave's notifications to the fake GOV.UK Notify over HTTP, and
Notify's receipts come back through the callback: the issue's "done when", end to end."""

import datetime as dt
import time
from collections import Counter

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError

from migrations_app.models import Event, Mailbox, Moment, Notification, NotificationSettings, Wave
from migrations_app.tasks import notifications_send
from tests.fakes.notify import start_fake_notify
from tests.notify_fixtures import primary_contact, templates_on, use_fake_notify, wave_in

DAY = dt.timedelta(days=1)


@pytest.fixture
def fake_notify(settings):
    fake, server = start_fake_notify()
    use_fake_notify(settings, fake)
    yield fake
    server.shutdown()
    server.server_close()


def run_until(broker, condition, *, timeout=60, every=1.0):
    """Start a worker and queue the beat task every `every` seconds (as beat would) until condition() holds."""
    with start_worker(broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            notifications_send.delay()
            time.sleep(every)
            if _holds(condition):
                return True
    return condition()


def _holds(condition) -> bool:
    """SQLite (the default without services) may say a table is locked while the worker thread writes: ask
    again on the next round."""
    try:
        return condition()
    except OperationalError:
        return False


def references(fake):
    return Counter(m.reference for m in fake.messages)


@pytest.mark.django_db(transaction=True)
def test_a_waves_notifications_go_out_once_at_the_right_moment(real_broker, fake_notify, org_a):
    templates_on()
    wave, mailboxes = wave_in(org_a, starts_in=13 * DAY, mailboxes=5)
    later, _ = wave_in(org_a, starts_in=30 * DAY, mailboxes=2)  # not due yet

    assert run_until(real_broker, lambda: Notification.objects.filter(status="sent").count() == 5)
    # the worker ran the task several times: still one message per mailbox
    assert run_until(real_broker, lambda: True, timeout=3)
    assert sorted(m.email_address for m in fake_notify.messages) == sorted(m.email for m in mailboxes)
    assert set(references(fake_notify).values()) == {1}
    first = fake_notify.messages[0]
    assert "moves to Exchange Online on" in first.personalisation["body"]
    assert org_a.name in first.personalisation["body"]
    assert "(UK time)" in first.personalisation["subject"]
    assert not Notification.objects.filter(wave_id=later.pk).exists()
    sent = Event.objects.filter(action="notification.sent", mailbox_id=mailboxes[0].pk).get()
    assert sent.data["moment"] == Moment.FIRST


@pytest.mark.django_db(transaction=True)
def test_a_reschedule_sends_an_update_and_a_delay_its_notice(real_broker, fake_notify, org_a):
    templates_on()
    wave, (mailbox, failed) = wave_in(org_a, starts_in=13 * DAY, mailboxes=2)
    assert run_until(real_broker, lambda: len(fake_notify.messages) == 2)

    new_start = wave.starts_at + 7 * DAY
    Wave.objects.filter(pk=wave.pk).update(starts_at=new_start, ends_at=new_start + dt.timedelta(hours=12))
    assert run_until(real_broker, lambda: len(fake_notify.messages) == 4)
    update = [m for m in fake_notify.messages[2:] if m.email_address == mailbox.email][0]
    assert update.personalisation["subject"].startswith("New date for the move")
    assert f"{new_start.astimezone(dt.UTC):%Y}" in update.personalisation["subject"]

    # The wave runs (its window as announced, so nobody hears of a new date) and one mailbox fails.
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    Mailbox.objects.filter(pk=failed.pk).update(state=Mailbox.State.FAILED)
    assert run_until(real_broker, lambda: len(fake_notify.messages) >= 5)
    assert len(fake_notify.messages) == 5
    delayed = Notification.objects.get(moment=Moment.DELAYED)
    assert (delayed.mailbox_id, delayed.status) == (failed.pk, "sent")
    assert fake_notify.messages[-1].personalisation["subject"] == "The move of your NHS mailbox is delayed"
    assert set(references(fake_notify).values()) == {1}


@pytest.mark.django_db(transaction=True)
def test_receipts_update_the_timeline(real_broker, fake_notify, org_a, live_server):
    templates_on()
    _, (good, bad, full) = wave_in(org_a, starts_in=13 * DAY, mailboxes=3)
    fake_notify.bounce.add(bad.email)
    fake_notify.temporary.add(full.email)
    fake_notify.callback_url = f"{live_server.url}/notify/receipts"
    assert run_until(real_broker, lambda: len(fake_notify.messages) == 3)

    assert fake_notify.deliver_callbacks() == [200, 200, 200]
    statuses = dict(Notification.objects.values_list("mailbox_id", "status"))
    assert statuses[good.pk] == "delivered"
    assert statuses[bad.pk] == "permanent-failure"
    assert statuses[full.pk] == "pending"  # a full inbox: sent again later
    assert Event.objects.filter(mailbox_id=bad.pk, action="notification.permanent-failure").exists()
    assert Event.objects.filter(mailbox_id=good.pk, action="notification.delivered").exists()

    fake_notify.callback_token = "not-the-token"
    fake_notify.messages[0].called_back = False
    assert fake_notify.deliver_callbacks() == [401]


@pytest.mark.django_db(transaction=True)
def test_a_429_storm_slows_sending_without_losing_a_message(real_broker, fake_notify, settings, org_a):
    templates_on()
    settings.NOTIFY_SEND_BATCH = 10
    _, mailboxes = wave_in(org_a, starts_in=13 * DAY, mailboxes=30)
    fake_notify.storm(25)

    assert run_until(
        real_broker, lambda: Notification.objects.filter(status="sent").count() == 30, timeout=90
    )
    assert fake_notify.responses.count(429) == 25
    assert sorted(m.email_address for m in fake_notify.messages) == sorted(m.email for m in mailboxes)
    assert set(references(fake_notify).values()) == {1}
    assert Notification.objects.filter(status="sent", attempts=1).count() == 30  # a 429 is not an attempt


@pytest.mark.django_db(transaction=True)
def test_the_daily_allowance_is_honoured_nearest_moves_first(real_broker, fake_notify, org_a):
    templates_on()
    NotificationSettings.objects.update_or_create(pk=1, defaults={"daily_allowance": 5})
    _, later = wave_in(org_a, starts_in=13 * DAY, mailboxes=4)
    _, sooner = wave_in(org_a, starts_in=2 * DAY, mailboxes=3)

    assert run_until(real_broker, lambda: len(fake_notify.messages) == 5)
    assert run_until(real_broker, lambda: True, timeout=3)  # more runs send nothing more today
    sent = {m.email_address for m in fake_notify.messages}
    assert {m.email for m in sooner} <= sent
    assert len(sent & {m.email for m in later}) == 2
    assert Notification.objects.filter(status="pending").count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_contacts_digest_goes_once_after_the_owners(real_broker, fake_notify, org_a, org_b):
    templates_on(Moment.FIRST, Moment.DIGEST)
    primary_contact(org_a)
    wave, staff = wave_in(org_a, starts_in=13 * DAY, mailboxes=3)
    room = wave_in(org_a, starts_in=13 * DAY, mailboxes=1, kind=Mailbox.Kind.ROOM)[1][0]
    Mailbox.objects.filter(pk=room.pk).update(wave=wave)
    # another organisation without a contact: its owner is told, its digest has nobody to go to
    other = wave_in(org_b, starts_in=13 * DAY, mailboxes=1)[1][0]

    assert run_until(real_broker, lambda: len(fake_notify.messages) == 5)
    assert run_until(real_broker, lambda: True, timeout=3)  # more runs: no second digest
    assert len(fake_notify.messages) == 5
    to = [m.email_address for m in fake_notify.messages]
    assert sorted(to) == sorted([m.email for m in staff] + [other.email, "it.lead@example.nhs.uk"])
    assert to[-1] == "it.lead@example.nhs.uk"  # after the owners
    digest = fake_notify.messages[-1]
    body = digest.personalisation["body"]
    assert "4 mailboxes of yours move in this window" in body
    assert "3 owners told by email about it\n" in body  # all sent before the digest went
    assert f"- {room.email} (room)" in body
    row = Notification.objects.get(mailbox__isnull=True, organisation_id=org_a.pk)
    assert (row.status, row.notify_id, row.moment) == ("sent", digest.id, Moment.FIRST)
    assert Notification.objects.get(mailbox__isnull=True, organisation_id=org_b.pk).status == "no-recipient"
    assert Event.objects.filter(
        action="notification.sent", organisation_id=org_a.pk, mailbox_id=None
    ).exists()
