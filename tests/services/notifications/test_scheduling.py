"""Which notifications are due when: each moment at its time, at most once per mailbox, updates on reschedule."""

import datetime as dt

import pytest
from django.utils import timezone

from migrations_app.models import Mailbox, Moment, Notification, NotificationSettings, Wave
from migrations_app.services.notifications.scheduling import notifications_schedule
from tests.notify_fixtures import templates_on, wave_in

DAY = dt.timedelta(days=1)


def moments_of(mailbox):
    return sorted(Notification.objects.filter(mailbox=mailbox).values_list("moment", flat=True))


@pytest.mark.django_db
def test_each_moment_comes_at_its_time_and_only_once(org_a):
    templates_on()
    wave, (mailbox, *_) = wave_in(org_a, starts_in=20 * DAY)
    start = wave.starts_at
    assert notifications_schedule(now=start - 15 * DAY).total == 0  # too early
    assert notifications_schedule(now=start - 14 * DAY).created == {Moment.FIRST: 3}
    assert notifications_schedule(now=start - 13 * DAY).total == 0  # not twice
    assert notifications_schedule(now=start - 3 * DAY).created == {Moment.REMINDER: 3}
    day_of = notifications_schedule(now=start - dt.timedelta(minutes=30))
    assert day_of.created == {Moment.DAY_OF: 3}
    assert moments_of(mailbox) == sorted([Moment.FIRST, Moment.REMINDER, Moment.DAY_OF])
    notice = Notification.objects.get(mailbox=mailbox, moment=Moment.FIRST)
    assert (notice.recipient, notice.window_starts_at, notice.status) == (mailbox.email, start, "pending")


@pytest.mark.django_db
def test_a_wave_approved_late_gets_only_the_latest_notice(org_a):
    templates_on()
    wave, (mailbox, *_) = wave_in(org_a, starts_in=2 * DAY)
    notifications_schedule()
    assert moments_of(mailbox) == [Moment.REMINDER]


@pytest.mark.django_db
def test_nothing_is_scheduled_for_a_template_not_switched_on(org_a):
    templates_on(Moment.REMINDER)
    wave_in(org_a, starts_in=10 * DAY)
    assert notifications_schedule().total == 0


@pytest.mark.django_db
def test_a_rescheduled_move_gets_an_update_not_a_repeat(org_a):
    templates_on()
    wave, (mailbox, *_) = wave_in(org_a, starts_in=13 * DAY)
    notifications_schedule()
    assert moments_of(mailbox) == [Moment.FIRST]
    new_start = wave.starts_at + 5 * DAY
    Wave.objects.filter(pk=wave.pk).update(starts_at=new_start, ends_at=new_start + dt.timedelta(hours=12))
    result = notifications_schedule()
    assert result.created == {Moment.UPDATE: 3}
    assert notifications_schedule().total == 0
    update = Notification.objects.get(mailbox=mailbox, moment=Moment.UPDATE)
    assert update.window_starts_at == new_start
    assert moments_of(mailbox) == sorted([Moment.FIRST, Moment.UPDATE])


@pytest.mark.django_db
def test_a_mailbox_moved_to_another_wave_hears_the_new_date(org_a):
    templates_on()
    first, (mailbox, *_) = wave_in(org_a, starts_in=12 * DAY)
    notifications_schedule()
    second, _ = wave_in(org_a, starts_in=30 * DAY, mailboxes=1)
    Mailbox.objects.filter(pk=mailbox.pk).update(wave=second)
    notifications_schedule(now=second.starts_at - 20 * DAY)
    assert moments_of(mailbox) == sorted([Moment.FIRST, Moment.UPDATE])


@pytest.mark.django_db
def test_delays_and_moves_are_told_once_each(org_a):
    templates_on()
    wave, (moved, failed, carried) = wave_in(org_a, starts_in=-DAY, status=Wave.Status.COMPLETED)
    Mailbox.objects.filter(pk=moved.pk).update(state=Mailbox.State.MIGRATED)
    Mailbox.objects.filter(pk=failed.pk).update(state=Mailbox.State.FAILED)
    Mailbox.objects.filter(pk=carried.pk).update(carried_over=True)
    assert notifications_schedule().created == {Moment.AFTER: 1, Moment.DELAYED: 2}
    assert notifications_schedule().total == 0
    assert moments_of(moved) == [Moment.AFTER]
    assert Notification.objects.get(mailbox=carried).occasion == f"carried:{wave.pk}"


@pytest.mark.django_db
def test_the_moments_follow_the_programme_office_settings(org_a):
    templates_on()
    NotificationSettings.objects.update_or_create(pk=1, defaults={"first_notice_days": 21})
    wave, _ = wave_in(org_a, starts_in=20 * DAY)
    assert notifications_schedule(now=timezone.now()).created == {Moment.FIRST: 3}
