"""Which mailboxes are due which notification now: run by beat, set-based, at most once each.

Per announced wave (a handful at any time) the moments that are due are worked out in Python, then each moment
is one INSERT ... SELECT over the wave's mailboxes with ON CONFLICT DO NOTHING against the unique (mailbox,
moment, occasion): running it twice, or on two workers at once, inserts nothing new. No Python loop over
mailboxes: an 83,000-mailbox weekend is a few statements.

- first notice, reminder, day of: mailboxes still to move in an approved / running / paused wave;
- after the move: migrated mailboxes of the wave;
- delayed: mailboxes of the wave that failed for good, or were carried over when the window closed;
- update: a mailbox that was told about another window (it changed wave, or the wave moved) is told the new one
  once, instead of being sent its earlier notices again;
- the digest (digest.py): after each moment's owners, one row per contact of each organisation concerned, and
  one after the window closes summarising what moved, failed and was carried over.

Only staff (user) mailboxes are emailed one by one: shared, room and equipment mailboxes have no owner in the
inventory, so they are listed in their organisation's digest instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import (
    CharField,
    DateTimeField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    Value,
)
from django.utils import timezone

from migrations_app.models import (
    Mailbox,
    Moment,
    Notification,
    NotificationSettings,
    NotificationTemplate,
    Wave,
)
from migrations_app.services.notifications.digest import digest_insert
from migrations_app.services.planning import LONDON

M = Mailbox.State
W = Wave.Status
N = Notification.Status
ANNOUNCED = (W.APPROVED, W.RUNNING, W.PAUSED)
TO_MOVE = (M.SCHEDULED, M.SYNCING, M.SYNCED)
# How long after its window a wave still gets "after" and "delayed" notices scheduled.
LOOKBACK = dt.timedelta(days=7)
COLUMNS = (
    "mailbox_id",
    "organisation_id",
    "wave_id",
    "moment",
    "occasion",
    "recipient",
    "window_starts_at",
    "status",
    "attempts",
    "error",
    "created_at",
)


@dataclass
class ScheduleResult:
    created: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.created.values())


def _insert(queryset, *, wave: Wave, moment: str, occasion: str, now: dt.datetime) -> int:
    """INSERT INTO notification SELECT ... ON CONFLICT DO NOTHING: one statement per (wave, moment)."""
    rows = (
        queryset.filter(kind=Mailbox.Kind.USER)
        .annotate(
            n_mailbox=F("id"),
            n_organisation=F("organisation_id"),
            n_wave=Value(wave.pk, output_field=IntegerField()),
            n_moment=Value(moment, output_field=CharField()),
            n_occasion=Value(occasion, output_field=CharField()),
            n_recipient=F("email"),
            n_window=Value(wave.starts_at, output_field=DateTimeField()),
            n_status=Value(N.PENDING, output_field=CharField()),
            n_attempts=Value(0, output_field=IntegerField()),
            n_error=Value("", output_field=CharField()),
            n_created=Value(now, output_field=DateTimeField()),
        )
        .values(
            "n_mailbox",
            "n_organisation",
            "n_wave",
            "n_moment",
            "n_occasion",
            "n_recipient",
            "n_window",
            "n_status",
            "n_attempts",
            "n_error",
            "n_created",
        )
    )
    sql, params = rows.query.sql_with_params()
    table = connection.ops.quote_name(Notification._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in COLUMNS)
    with connection.cursor() as cursor:
        # The SELECT always has a WHERE, which SQLite needs to read ON CONFLICT as the upsert clause.
        cursor.execute(f"INSERT INTO {table} ({columns}) {sql} ON CONFLICT DO NOTHING", params)
        return max(cursor.rowcount, 0)


def day_of_at(wave: Wave, settings: NotificationSettings) -> dt.datetime:
    """The 'today' notice: at the configured hour (UK time) on the window's first day, or an hour before the
    window if it starts earlier than that."""
    local = wave.starts_at.astimezone(LONDON)
    at = dt.datetime.combine(local.date(), dt.time(settings.day_of_hour), tzinfo=LONDON)
    return min(at, wave.starts_at - dt.timedelta(hours=1))


def due_moment(
    wave: Wave, settings: NotificationSettings, now: dt.datetime
) -> tuple[str, dt.datetime] | None:
    """The before-the-move moment due now for a wave, and since when (the latest one only: a wave approved two
    days before its window gets the reminder, not the first notice as well)."""
    if wave.status not in ANNOUNCED or now >= wave.ends_at:
        return None
    moments = (
        (Moment.DAY_OF, day_of_at(wave, settings)),
        (Moment.REMINDER, wave.starts_at - dt.timedelta(days=settings.second_notice_days)),
        (Moment.FIRST, wave.starts_at - dt.timedelta(days=settings.first_notice_days)),
    )
    for moment, due_at in moments:
        if now >= due_at:
            return moment, due_at
    return None


def _told_of_another_window(wave: Wave):
    told = Notification.objects.filter(
        mailbox_id=OuterRef("pk"), moment__in=(Moment.FIRST, Moment.REMINDER, Moment.DAY_OF, Moment.UPDATE)
    ).exclude(status=N.NO_RECIPIENT)
    return Exists(told) & ~Exists(told.filter(window_starts_at=wave.starts_at))


@transaction.atomic
def notifications_schedule(*, now: dt.datetime | None = None) -> ScheduleResult:
    """Insert every notification due now that does not exist yet. Safe to run at any time, on any worker."""
    now = now or timezone.now()
    settings = NotificationSettings.load()
    enabled = set(NotificationTemplate.objects.filter(enabled=True).values_list("moment", flat=True))
    result = ScheduleResult()
    if not enabled:
        return result
    horizon = now + dt.timedelta(days=settings.first_notice_days)
    # A wave beyond the horizon matters too when some of its mailboxes were told of another date (the wave
    # moved, or they came from another wave): they get the update now, not weeks later.
    told = Notification.objects.filter(mailbox__wave_id=OuterRef("pk"))
    waves = Wave.objects.filter(
        Q(status__in=ANNOUNCED, starts_at__lte=horizon)
        | Q(status__in=ANNOUNCED, ends_at__gt=now) & Exists(told)
        | Q(status=W.COMPLETED, ends_at__gte=now - LOOKBACK),
        stamped_at__isnull=False,
    )
    for wave in waves:
        members = Mailbox.objects.filter(wave_id=wave.pk)
        to_move = members.filter(state__in=TO_MOVE, carried_over=False)

        def add(moment: str, queryset, occasion: str = "", wave: Wave = wave) -> None:
            if moment in enabled:
                count = _insert(queryset, wave=wave, moment=moment, occasion=occasion, now=now)
                if count:
                    result.created[moment] = result.created.get(moment, 0) + count

        def digest(moment: str, queryset, occasion: str = "", wave: Wave = wave) -> None:
            # After the owners' rows: the queue is nearest window then id, so the digest follows them.
            if Moment.DIGEST in enabled:
                count = digest_insert(queryset, wave=wave, moment=moment, occasion=occasion, now=now)
                if count:
                    result.created[Moment.DIGEST] = result.created.get(Moment.DIGEST, 0) + count

        if wave.status in ANNOUNCED and now < wave.ends_at:
            # An update first: a mailbox told of another window hears of this one as "a new date".
            occasion = f"{wave.pk}@{wave.starts_at:%Y%m%dT%H%M}"
            add(Moment.UPDATE, to_move.filter(_told_of_another_window(wave)), occasion)
            if Moment.UPDATE in enabled:
                # The organisations whose staff were told of this new date, read off their rows (the query
                # above no longer finds them; and see below on anti-joining rows inserted just now).
                digest(
                    Moment.UPDATE,
                    Notification.objects.filter(
                        wave_id=wave.pk, moment=Moment.UPDATE, occasion=occasion, mailbox__isnull=False
                    ),
                    occasion,
                )
        due = due_moment(wave, settings, now)
        if due is not None:
            moment, due_at = due
            # Not the mailboxes told of the new date since this moment came due: the update said it already.
            updated = Notification.objects.filter(
                mailbox_id=OuterRef("pk"),
                moment=Moment.UPDATE,
                window_starts_at=wave.starts_at,
                created_at__gte=due_at,
            )
            add(moment, to_move.exclude(_told_of_another_window(wave)).exclude(Exists(updated)))
            if moment in enabled:
                # Every organisation with mailboxes still to move in the wave (shared ones included). Not the
                # query above again: it would anti-join the rows just inserted, planned from statistics that
                # do not know them yet (quadratic: 433 s instead of 17 for 83,000 in bench.notify).
                digest(moment, to_move)
        if wave.status != W.APPROVED:
            add(Moment.AFTER, members.filter(state=M.MIGRATED))
            add(Moment.DELAYED, members.filter(state=M.FAILED), f"failed:{wave.pk}")
            add(
                Moment.DELAYED,
                members.filter(carried_over=True).exclude(state=M.MIGRATED),
                f"carried:{wave.pk}",
            )
            if (now >= wave.ends_at or wave.status == W.COMPLETED) and enabled & {
                Moment.AFTER,
                Moment.DELAYED,
            }:
                # The window is over: what moved, what failed or was carried over, once.
                digest(Moment.AFTER, members)
    # Nobody to send to (a digest for an organisation without contacts): kept, shown on its page, never sent.
    Notification.objects.filter(status=N.PENDING, recipient="").update(
        status=N.NO_RECIPIENT, error="No owner or organisation contact to send to"
    )
    return result
