"""Helpers for the notification tests: templates switched on, a wave of mailboxes at a given distance from
now, and settings that point the Notify client at the fake Notify."""

import datetime as dt

from django.utils import timezone

from migrations_app.models import Contact, Mailbox, Moment, NotificationTemplate, Wave
from migrations_app.services.notifications.templates import DEFAULTS
from tests.fakes.notify import API_KEY, CALLBACK_TOKEN, TEMPLATE_ID
from tests.wave_fixtures import ready_mailboxes, wave_with


def templates_on(*moments: str) -> None:
    # The owners' moments by default; the contacts' digest only when asked for by name.
    for moment in moments or [m for m in Moment.values if m != Moment.DIGEST]:
        subject, body = DEFAULTS[moment]
        NotificationTemplate.objects.update_or_create(
            moment=moment,
            defaults={"subject": subject, "body": body, "enabled": True, "previewed_at": timezone.now()},
        )


def wave_in(
    organisation, *, starts_in: dt.timedelta, mailboxes: int = 3, status=Wave.Status.APPROVED, name=None, **kw
):
    """An approved wave starting `starts_in` from now, with `mailboxes` scheduled mailboxes stamped on it."""
    starts = timezone.now() + starts_in
    wave = wave_with(
        organisation,
        status=status,
        day=starts.date(),
        name=name or f"Wave {starts:%Y%m%d%H%M%S%f}",
        stamped_at=timezone.now(),
    )
    Wave.objects.filter(pk=wave.pk).update(starts_at=starts, ends_at=starts + dt.timedelta(hours=12))
    wave.refresh_from_db()
    rows = ready_mailboxes(organisation, mailboxes, **kw)
    Mailbox.objects.filter(pk__in=[m.pk for m in rows]).update(wave=wave, state=Mailbox.State.SCHEDULED)
    return wave, list(Mailbox.objects.filter(pk__in=[m.pk for m in rows]).order_by("id"))


def primary_contact(organisation, email="it.lead@example.nhs.uk"):
    return Contact.objects.create(
        organisation=organisation, role=Contact.Role.PRIMARY, name="IT lead", email=email
    )


def use_fake_notify(settings, fake) -> None:
    settings.NOTIFY_BACKEND = "notify"
    settings.NOTIFY_API_KEY = API_KEY
    settings.NOTIFY_BASE_URL = fake.url
    settings.NOTIFY_TEMPLATE_IDS = {"default": TEMPLATE_ID}
    settings.NOTIFY_CALLBACK_TOKEN = CALLBACK_TOKEN
    settings.NOTIFY_RATE_LIMIT_WAIT_SECONDS = 1
    settings.NOTIFY_SEND_THREADS = 2
