"""The event table is partitioned by month on PostgreSQL (docs/adr/029-event-partitions.md). Events of several
months land in their own partitions, and every reader still sees all of them, in order, within its scope: the
feed, the webhook fan-out, the audit log (filtered and paged), a mailbox's timeline and the CSV export. Every
partition refuses UPDATE, DELETE and TRUNCATE; an event outside every month lands in the default partition and
/healthz says so."""

import csv
import datetime as dt
import io
import time

import psycopg
import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from migrations_app.models import Event, Export, WebhookDelivery
from migrations_app.services import exports
from migrations_app.services.event_partitions import event_partitions_ensure, event_partitions_status
from migrations_app.services.webhooks import webhook_create, webhooks_fan_out
from tests.factories import MailboxFactory
from tests.webhook_receiver import allow_receiver

SECRET = "whsec_0123456789abcdefghijklmnop"


def _months_ago(n: int) -> dt.datetime:
    """The 15th of the month n months before this one, at noon UTC."""
    month = timezone.now().astimezone(dt.UTC).replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    for _ in range(n):
        month = (month.replace(day=1) - dt.timedelta(days=1)).replace(day=15)
    return month


def _event_at(when: dt.datetime, action: str, *, organisation=None, mailbox=None) -> int:
    """An event written at `when` (the model stamps created_at itself, so raw SQL, as the benchmark does)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO migrations_app_event (created_at, action, organisation_id, mailbox_id, subject,"
            " from_state, to_state, message, data) VALUES (%s, %s, %s, %s, %s, '', '', %s, '{}') RETURNING id",
            [
                when,
                action,
                organisation and organisation.pk,
                mailbox and mailbox.pk,
                mailbox.email if mailbox else "",
                f"written {when:%Y-%m}",
            ],
        )
        return cursor.fetchone()[0]


def _partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM migrations_app_event WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def test_the_migration_made_this_month_the_next_ones_and_a_default(postgres):
    status = event_partitions_status()
    assert status["partitioned"] and status["ok"], status
    assert status["missing_months"] == [] and status["default_partition_rows"] == 0
    this_month = timezone.now().astimezone(dt.UTC)
    assert status["newest_month"] >= f"{this_month + dt.timedelta(days=3 * 28):%Y-%m}"
    # beat asks for more months ahead: they are made once
    event_partitions_ensure(months_ahead=14)
    assert event_partitions_ensure(months_ahead=14) == 0  # made once
    assert event_partitions_status()["newest_month"] >= f"{this_month + dt.timedelta(days=14 * 30):%Y-%m}"


def test_sqlite_keeps_one_plain_table_and_postgresql_partitions_it(db):
    status = event_partitions_status()
    assert status["partitioned"] is (connection.vendor == "postgresql") and status["ok"]
    if connection.vendor != "postgresql":
        assert event_partitions_ensure(months_ahead=2) == 0
        assert Event.objects.create(action="still.recorded").pk


def test_events_of_five_months_are_in_five_partitions_and_every_reader_sees_them(
    postgres, api, client_for, officer, admin_a, admin_b, org_a, org_b, settings, monkeypatch, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    allow_receiver(settings, "http://127.0.0.1:9/")
    webhook_create(
        actor=admin_a, organisation=org_a, url="http://127.0.0.1:9/", secret=SECRET, event_types=[]
    )
    client = api(officer)  # (making its token records an event)
    after = Event.objects.order_by("-id").values_list("id", flat=True).first()
    event_partitions_ensure(since=_months_ago(4).date())
    mailbox = MailboxFactory(organisation=org_a, email="ann@rj1.nhs.uk")
    # oldest first, as the portal writes them: ids follow time
    ours = [
        _event_at(_months_ago(n), f"test.month-{n}", organisation=org_a, mailbox=mailbox)
        for n in range(4, -1, -1)
    ]
    theirs = _event_at(_months_ago(2), "test.other-trust", organisation=org_b)
    assert len({_partition_of(i) for i in ours}) == 5

    # the feed, from the cursor before them: every one, once, in (txid, id) order
    seen, cursor = [], after
    while True:
        body = client.get(f"/api/v1/events/?after={cursor}&page_size=2").json()
        if not body["results"]:
            break
        seen += [e["id"] for e in body["results"]]
        cursor = body["after"]
    assert seen == [*ours, theirs]

    # webhooks: org_a's five, not org_b's
    assert webhooks_fan_out() == 5
    delivered = WebhookDelivery.objects.filter(kind="event").values_list("event_id", flat=True)
    assert sorted(delivered) == ours

    # the audit log, newest first across partitions; by organisation; by a month's dates; keyset paged
    page = client_for(officer).get("/audit/").content.decode()
    assert all(f"test.month-{n}" in page for n in range(5)) and "test.other-trust" in page
    page = client_for(officer).get("/audit/", {"organisation": "rrv"}).content.decode()
    assert "test.other-trust" in page and "test.month-" not in page
    three = _months_ago(3).date()
    page = client_for(officer).get("/audit/", {"date_from": three, "date_to": three}).content.decode()
    assert "test.month-3" in page and "test.month-2" not in page and "test.month-4" not in page
    page = client_for(officer).get("/audit/", {"before": ours[2]}).content.decode()
    assert "test.month-3" in page and "test.month-4" in page and "test.month-1" not in page

    # the trust admin: their own months, never the other trust's
    page = client_for(admin_a).get("/audit/").content.decode()
    assert all(f"test.month-{n}" in page for n in range(5)) and "test.other-trust" not in page
    assert client_for(admin_b).get(reverse("mailbox_detail", args=[mailbox.pk])).status_code == 404

    # the mailbox's timeline holds all five months
    timeline = client_for(admin_a).get(reverse("mailbox_detail", args=[mailbox.pk])).content.decode()
    timeline = timeline.split('id="timeline"', 1)[1]
    assert all(f"written {_months_ago(n):%Y-%m}" in timeline for n in range(5))

    # the whole audit log as a background CSV export
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 2)
    export = exports.export_start(actor=admin_a, kind="audit")
    exports.export_run(export_id=export.pk)
    export = Export.objects.get(pk=export.pk)
    assert export.status == "succeeded", export.failure
    rows = list(csv.reader(io.StringIO(export.file.open("rb").read().decode("utf-8-sig"))))
    assert {int(r[0]) for r in rows[1:]} >= set(ours) and str(theirs) not in {r[0] for r in rows[1:]}


def test_every_partition_refuses_update_delete_and_truncate(postgres):
    event_partitions_ensure(since=_months_ago(2).date())
    old = _event_at(_months_ago(2), "test.old")
    stray = _event_at(dt.datetime(2199, 1, 1, tzinfo=dt.UTC), "test.stray")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'migrations_app_event'::regclass"
        )
        partitions = [name for (name,) in cursor.fetchall()]
    assert "migrations_app_event_default" in partitions and len(partitions) >= 6

    def refused(sql: str) -> None:
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql)

    # row triggers: cloned onto every partition by PostgreSQL (those with a row show it)
    for partition in (_partition_of(old), _partition_of(stray)):
        refused(f"UPDATE {partition} SET message = 'rewritten'")
        refused(f"DELETE FROM {partition}")
    # TRUNCATE of one partition fires only that partition's statement trigger: each has its own
    for partition in partitions:
        refused(f"TRUNCATE {partition}")
    refused("TRUNCATE migrations_app_event")
    assert Event.objects.get(pk=old).message == f"written {_months_ago(2):%Y-%m}"
    assert Event.objects.filter(pk=stray).exists()


def test_an_event_outside_every_month_lands_in_the_default_partition_and_healthz_says_so(
    postgres, client, client_for, officer, caplog
):
    assert "attention" not in client.get("/healthz").json()
    stray = _event_at(dt.datetime(2199, 1, 1, tzinfo=dt.UTC), "test.from-the-future")
    assert _partition_of(stray) == "migrations_app_event_default"

    assert client.get("/healthz").json()["attention"] == ["event_partitions"]  # a bare flag for monitors
    details = client_for(officer).get("/healthz").json()
    assert details["status"] == "ok" and details["event_partitions"]["default_partition_rows"] == 1

    from migrations_app.tasks import event_partitions_ensure as beat_task

    beat_task()
    assert "event partitions need attention" in caplog.text


def test_a_month_whose_events_already_sit_in_the_default_partition_is_left_for_an_operator(postgres):
    later = _months_ago(0) + dt.timedelta(days=6 * 31)  # beyond the months made by the migration
    stray = _event_at(later, "test.early-for-its-month")
    assert _partition_of(stray) == "migrations_app_event_default"
    event_partitions_ensure(months_ahead=7)
    assert _partition_of(stray) == "migrations_app_event_default"  # moved by no one, lost by no one
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s), to_regclass(%s)",
            [
                f"migrations_app_event_{later:%Y_%m}",
                f"migrations_app_event_{later + dt.timedelta(days=31):%Y_%m}",
            ],
        )
        skipped, made = cursor.fetchone()
    assert skipped is None and made is not None
    assert event_partitions_status()["default_partition_rows"] == 1


def test_beat_keeps_the_coming_months_made(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["event-partitions-ensure"]
    assert (
        schedule["task"] == "migrations_app.tasks.event_partitions_ensure" and schedule["schedule"] <= 86400
    )


@pytest.mark.django_db(transaction=True)
def test_making_partitions_gives_way_to_a_long_reader_rather_than_stalling_every_insert(
    postgres, monkeypatch, caplog
):
    from migrations_app.services import event_partitions

    monkeypatch.setattr(event_partitions, "LOCK_TIMEOUT_MS", 200)
    s = connection.settings_dict
    with psycopg.connect(dbname=s["NAME"], user=s["USER"], host=s["HOST"], port=s["PORT"] or 5432) as export:
        export.execute("SELECT count(*) FROM migrations_app_event")  # a long export, its transaction open
        started = time.monotonic()
        assert event_partitions_ensure(months_ahead=9) == 0
        assert time.monotonic() - started < 5
        assert "the event table is busy" in caplog.text
        export.rollback()
    assert event_partitions_ensure(months_ahead=9) >= 1  # the next beat, once the reader is done
