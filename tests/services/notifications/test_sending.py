"""Sending without a worker: the log backend `make run` uses writes what would be sent on the mailbox's
timeline; Notify's errors are handled as documented; the per-minute budget holds."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.models import Event, Notification, NotificationSettings
from migrations_app.services.notifications.scheduling import notifications_schedule
from migrations_app.services.notifications.sending import LogBackend, backend, notifications_send_due
from tests.fakes.notify import start_fake_notify
from tests.notify_fixtures import templates_on, use_fake_notify, wave_in

DAY = dt.timedelta(days=1)


@pytest.fixture
def fake(settings):
    fake, server = start_fake_notify()
    use_fake_notify(settings, fake)
    settings.NOTIFY_SEND_THREADS = 1
    yield fake
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_without_a_key_the_log_backend_shows_the_message_on_the_timeline(settings, org_a):
    settings.NOTIFY_API_KEY, settings.NOTIFY_BACKEND = "", ""
    assert isinstance(backend(), LogBackend)
    templates_on()
    _, (mailbox,) = wave_in(org_a, starts_in=13 * DAY, mailboxes=1)
    notifications_schedule()
    assert notifications_send_due().sent == 1
    event = Event.objects.get(action="notification.logged", mailbox_id=mailbox.pk)
    assert event.subject == mailbox.email
    assert "Your NHS mailbox moves on" in event.message and org_a.name in event.message
    assert Notification.objects.get().status == "sent"


@pytest.mark.django_db
def test_notify_refuses_a_malformed_address_and_it_is_not_retried(fake, org_a):
    templates_on()
    _, (mailbox,) = wave_in(org_a, starts_in=13 * DAY, mailboxes=1)
    notifications_schedule()
    Notification.objects.update(recipient="not-an-address")
    result = notifications_send_due()
    assert (result.sent, result.rejected) == (0, 1)
    notification = Notification.objects.get()
    assert (notification.status, notification.error) == (
        "rejected",
        "email_address Not a valid email address",
    )
    assert notifications_send_due().sent == 0


@pytest.mark.django_db
def test_a_wrong_key_is_retried_later_not_lost(fake, settings, org_a):
    templates_on()
    wave_in(org_a, starts_in=13 * DAY, mailboxes=2)
    notifications_schedule()
    settings.NOTIFY_API_KEY = (
        "portal_test-26785a09-ab16-4eb0-8407-a37497a57506-00000000-0000-0000-0000-000000000000"
    )
    result = notifications_send_due()
    assert (result.sent, result.retried, result.stopped) == (0, 2, "retry")
    assert fake.responses == [403, 403]
    assert set(Notification.objects.values_list("status", flat=True)) == {"pending"}
    assert "AuthError" not in Notification.objects.first().error  # Notify's message, not its type
    assert "API key not found" in Notification.objects.first().error


@pytest.mark.django_db
def test_notifys_daily_limit_waits_until_tomorrow(fake, org_a):
    templates_on()
    fake.daily_limit = 1
    wave_in(org_a, starts_in=13 * DAY, mailboxes=3)
    notifications_schedule()
    result = notifications_send_due()
    assert (result.sent, result.stopped) == (1, "daily_limit")
    waiting = Notification.objects.filter(status="pending")
    assert all(
        n.next_attempt_at > timezone.now() + dt.timedelta(hours=1) for n in waiting if n.next_attempt_at
    )
    assert waiting.count() == 2


@pytest.mark.django_db
def test_the_per_minute_budget_holds(settings, org_a):
    settings.NOTIFY_API_KEY, settings.NOTIFY_BACKEND = "", ""
    NotificationSettings.objects.update_or_create(pk=1, defaults={"per_minute": 4})
    templates_on()
    wave_in(org_a, starts_in=13 * DAY, mailboxes=6)
    notifications_schedule()
    result = notifications_send_due()
    assert (result.sent, result.stopped) == (4, "limit")
    assert notifications_send_due(now=timezone.now() + dt.timedelta(minutes=2)).sent == 2


@pytest.mark.django_db
def test_the_connections_to_notify_stay_open_across_batches_and_runs(fake, settings, org_a):
    settings.NOTIFY_SEND_THREADS, settings.NOTIFY_SEND_BATCH = 2, 5
    templates_on()
    _, mailboxes = wave_in(org_a, starts_in=13 * DAY, mailboxes=12)
    notifications_schedule()
    assert notifications_send_due(max_batches=2).sent == 10  # two batches in one run
    assert notifications_send_due().sent == 2  # and another run
    assert sorted(m.email_address for m in fake.messages) == sorted(m.email for m in mailboxes)
    assert fake.connections <= 2  # one keep-alive connection per sending thread, not one per batch


@pytest.mark.django_db
def test_notify_unreachable_is_retried_later_not_lost(fake, settings, org_a):
    templates_on()
    wave_in(org_a, starts_in=13 * DAY, mailboxes=2)
    notifications_schedule()
    settings.NOTIFY_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    result = notifications_send_due()
    assert (result.sent, result.retried, result.stopped) == (0, 2, "retry")
    rows = Notification.objects.all()
    assert {r.status for r in rows} == {"pending"} and all(r.next_attempt_at for r in rows)
    assert "Connection" in rows[0].error or "refused" in rows[0].error


@pytest.mark.django_db
def test_a_batch_claimed_behind_one_notify_pushed_back_on_goes_back_untouched(fake, settings, org_a):
    """The sender claims the next batch while one is on the wire; when Notify answers that one with a 429,
    the next was never sent: it is back in the queue as it was (no attempt, no error, no wait), and the next
    run sends everything exactly once."""
    settings.NOTIFY_SEND_BATCH = 5
    templates_on()
    _, mailboxes = wave_in(org_a, starts_in=13 * DAY, mailboxes=12)
    notifications_schedule()
    fake.storm(1)  # Notify's per-minute limit answers the very first request
    result = notifications_send_due()
    assert (result.sent, result.rate_limited, result.stopped) == (4, 1, "rate_limited")
    assert fake.responses == [429, 201, 201, 201, 201]  # the second batch never reached Notify
    waiting = Notification.objects.filter(status="pending")
    assert waiting.count() == 8
    pushed_back = waiting.exclude(next_attempt_at=None)
    assert pushed_back.count() == 1 and "rate limit" in pushed_back.get().error.lower()
    untouched = waiting.filter(next_attempt_at=None)
    assert untouched.count() == 7 and {(n.attempts, n.error) for n in untouched} == {(0, "")}
    assert not Notification.objects.filter(status="sending").exists()

    later = timezone.now() + dt.timedelta(seconds=settings.NOTIFY_RATE_LIMIT_WAIT_SECONDS + 1)
    assert notifications_send_due(now=later).sent == 8
    assert sorted(m.email_address for m in fake.messages) == sorted(m.email for m in mailboxes)
