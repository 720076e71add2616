"""What does telling an 83,000-mailbox weekend cost the portal? Schedule the T-3 reminders of one weekend wave
(set-based, at most once per mailbox) and hand them all to a fake GOV.UK Notify over HTTP, with Notify's rate
limit lifted (at its real 3,000 a minute the same work takes 83,000 / 3,000 = 27.7 minutes, whatever the
portal does).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_notify_bench .venv/bin/python -m bench.notify

DATABASE_URL must name a scratch database containing "bench" (its schema is dropped). Three figures:

- schedule_s: notifications_schedule(), the beat's scheduling pass (one INSERT ... SELECT for the wave);
- send_portal_s: notifications_send_due() through the log backend: everything the portal does to send (claim,
  render, record, timeline events) without HTTP; schedule_s + send_portal_s is the portal time the issue asks
  to keep under 60 s;
- http_s: the same notifications (--http of them, all by default) sent again through
  notifications-python-client to the fake Notify (a separate process on this machine, JWT checked on every
  request), --threads at a time: wall time, the fake's own work included.

Baseline: the same scheduling as a Python loop of one get-or-create per mailbox (what one would write first),
timed on --baseline mailboxes and scaled to the wave. Prints one JSON line with os.getloadavg().
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import os
import time

from bench._scratch import log, reset_schema, scratch_database_url


def serve_fake(port_queue) -> None:
    """The fake Notify in its own process, with its limits lifted."""
    from tests.fakes.notify import start_fake_notify

    fake, server = start_fake_notify(per_minute=10**9, daily_limit=10**9)
    port_queue.put(fake.url)
    while True:
        time.sleep(3600)


def generate(*, mailboxes: int, orgs: int):
    from django.utils import timezone

    from migrations_app.models import Mailbox, Organisation, Wave

    # Through the ORM (only 400 rows), so new columns with Python defaults keep working.
    Organisation.objects.bulk_create(
        Organisation(
            ods_code=f"N{i:05d}",
            name=f"Organisation {i}",
            kind=Organisation.Kind.GP_PRACTICE,
            region=Organisation.Region.LONDON,
            status=Organisation.Status.MIGRATING,
        )
        for i in range(1, orgs + 1)
    )
    org_ids = list(Organisation.objects.order_by("ods_code").values_list("id", flat=True))
    starts = timezone.now() + dt.timedelta(days=2, hours=12)
    wave = Wave.objects.create(
        name="Weekend",
        kind=Wave.Kind.WEEKEND,
        starts_at=starts,
        ends_at=starts + dt.timedelta(hours=60),
        capacity_mailboxes=mailboxes,
        capacity_bytes=10**15,
        status=Wave.Status.APPROVED,
        stamped_at=timezone.now(),
    )
    Mailbox.objects.bulk_create(
        (
            Mailbox(
                organisation_id=org_ids[i % orgs],
                email=f"user{i}@n{i % orgs + 1:05d}.nhs.uk",
                display_name=f"User {i}",
                size_bytes=1000,
                item_count=10,
                state=Mailbox.State.SCHEDULED,
                wave=wave,
            )
            for i in range(1, mailboxes + 1)
        ),
        batch_size=5000,
    )
    return wave


def baseline(*, wave, count: int) -> float:
    """One get_or_create per mailbox: the loop the set-based pass replaces."""
    from django.utils import timezone

    from migrations_app.models import Mailbox, Moment, Notification

    now = timezone.now()
    started = time.perf_counter()
    for mailbox in Mailbox.objects.filter(wave=wave).order_by("id")[:count].iterator():
        Notification.objects.get_or_create(
            mailbox=mailbox,
            moment=Moment.REMINDER,
            occasion="",
            defaults={
                "organisation_id": mailbox.organisation_id,
                "wave_id": wave.pk,
                "recipient": mailbox.email,
                "window_starts_at": wave.starts_at,
                "created_at": now,
            },
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=83_000)
    parser.add_argument("--organisations", type=int, default=400)
    parser.add_argument("--baseline", type=int, default=5_000, help="mailboxes the baseline loop is timed on")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--http", type=int, default=83_000, help="how many of them to send again over HTTP to the fake Notify"
    )
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = scratch_database_url("portal_notify_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    queue = multiprocessing.get_context("fork").Queue()
    fake = multiprocessing.get_context("fork").Process(target=serve_fake, args=(queue,), daemon=True)
    fake.start()  # before Django sets up: the fake process holds no database connection
    fake_url = queue.get(timeout=30)

    import django

    django.setup()
    from django.conf import settings

    from migrations_app.models import Moment, Notification, NotificationSettings, NotificationTemplate
    from migrations_app.services.notifications.scheduling import notifications_schedule
    from migrations_app.services.notifications.sending import (
        LogBackend,
        NotifyBackend,
        notifications_send_due,
    )
    from migrations_app.services.notifications.templates import DEFAULTS
    from tests.fakes.notify import API_KEY, TEMPLATE_ID

    # The log backend logs a line per message; here it stands in for the HTTP call, so it stays quiet.
    logging.getLogger("migrations_app.services.notifications.sending").setLevel(logging.WARNING)
    reset_schema()
    wave = generate(mailboxes=args.mailboxes, orgs=args.organisations)
    subject, body = DEFAULTS[Moment.REMINDER]
    NotificationTemplate.objects.create(moment=Moment.REMINDER, subject=subject, body=body, enabled=True)
    NotificationSettings.objects.update_or_create(
        pk=1, defaults={"per_minute": 10**9, "daily_allowance": 10**9}
    )
    log(
        f"{args.mailboxes:,} mailboxes in {args.organisations} organisations, one weekend wave 2.5 days ahead"
    )

    base_s = baseline(wave=wave, count=args.baseline)
    Notification.objects.all().delete()
    log(f"baseline: {args.baseline:,} get_or_create in {base_s:.1f} s")

    started = time.perf_counter()
    scheduled = notifications_schedule().total
    schedule_s = time.perf_counter() - started
    assert scheduled == args.mailboxes, scheduled
    assert notifications_schedule().total == 0  # at most once
    log(f"scheduled {scheduled:,} in {schedule_s:.2f} s")

    started = time.perf_counter()
    logged = notifications_send_due(sender=LogBackend()).sent
    send_portal_s = time.perf_counter() - started
    assert logged == args.mailboxes, logged
    log(f"log backend: {logged:,} in {send_portal_s:.1f} s")

    again = list(
        Notification.objects.order_by("window_starts_at", "id").values_list("id", flat=True)[: args.http]
    )
    Notification.objects.filter(id__in=again).update(
        status="pending", sent_at=None, notify_id=None, next_attempt_at=None, attempts=0
    )
    settings.NOTIFY_SEND_THREADS = args.threads
    sender = NotifyBackend(
        api_key=API_KEY, base_url=fake_url, template_ids={"default": TEMPLATE_ID}, threads=args.threads
    )
    started = time.perf_counter()
    result = notifications_send_due(sender=sender)
    http_s = time.perf_counter() - started
    sent = result.sent
    assert sent == min(args.http, args.mailboxes), result
    log(f"notify over HTTP: {sent:,} in {http_s:.1f} s")
    fake.terminate()

    print(
        json.dumps(
            {
                "bench": "notify",
                "mailboxes": args.mailboxes,
                "schedule_s": round(schedule_s, 2),
                "send_portal_s": round(send_portal_s, 1),
                "portal_s": round(schedule_s + send_portal_s, 1),
                "http_sent": sent,
                "http_s": round(http_s, 1),
                "http_per_s": round(sent / http_s),
                "threads": args.threads,
                "notify_rate_limit_minutes": round(args.mailboxes / 3000, 1),
                "baseline_schedule_s": round(base_s * args.mailboxes / args.baseline, 1),
                "baseline_measured_on": args.baseline,
                "load": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
