"""The mailbox counters that the status pages read must equal a fresh GROUP BY of the mailbox table after
every kind of write: imports (staging, direct COPY, the national load with its indexes deferred), approval
stamping, moves, execution transitions, people's retries and roll-backs, deletes. On SQLite (row triggers) and
PostgreSQL (statement triggers with transition tables)."""

import datetime as dt
import io

import pytest

from migrations_app.engines.simulated import SimulatedEngine
from migrations_app.models import Mailbox, MailboxCounter, Wave
from migrations_app.services.counters import counters_current, counters_fresh, counters_rebuild
from migrations_app.services.execution import (
    SYNC,
    mailbox_claim,
    mailbox_retry,
    mailbox_rollback,
    mailbox_run,
    wave_tick,
)
from migrations_app.services.imports import inventory_import, national
from migrations_app.services.wave_moves import wave_move_mailbox
from migrations_app.services.waves import wave_approve, wave_go, wave_propose
from tests.execution_fixtures import approved_wave
from tests.wave_fixtures import ready_mailboxes, wave_with

HEADER = "email,display_name,kind,size_bytes,item_count,affinity_group,target_upn\n"
M = Mailbox.State


def assert_counters_match():
    assert counters_current() == counters_fresh()


def test_inserts_updates_and_deletes_keep_the_counters(db, org_a, org_b):
    a = ready_mailboxes(org_a, 5, size=100)
    ready_mailboxes(org_b, 3, size=7)
    assert_counters_match()
    assert counters_current()[(org_a.pk, 0, M.READY, False)] == (5, 500)
    Mailbox.objects.filter(pk__in=[m.pk for m in a[:2]]).update(state=M.BLOCKED, size_bytes=50)
    Mailbox.objects.filter(pk=a[2].pk).update(bytes_copied=10, heartbeat_at=None)  # counts nothing
    assert_counters_match()
    assert counters_current()[(org_a.pk, 0, M.BLOCKED, False)] == (2, 100)
    Mailbox.objects.filter(pk=a[4].pk).delete()
    assert_counters_match()


def test_imports_keep_the_counters(db, org_a, admin_a):
    text = HEADER + "a@rj1.nhs.uk,A,user,10,2,,\nb@rj1.nhs.uk,B,shared,20,4,,\n"
    inventory_import(source=io.BytesIO(text.encode()), organisation=org_a, actor=admin_a)
    assert counters_current() == {(org_a.pk, 0, M.INVENTORIED, False): (2, 30)}
    # a re-import through the staging path changes one size and adds one mailbox
    text = HEADER + "a@rj1.nhs.uk,A,user,15,2,,\nb@rj1.nhs.uk,B,shared,20,4,,\nc@rj1.nhs.uk,C,user,1,1,,\n"
    inventory_import(source=io.BytesIO(text.encode()), organisation=org_a, actor=admin_a)
    assert counters_current() == {(org_a.pk, 0, M.INVENTORIED, False): (3, 36)}
    assert_counters_match()


def test_the_national_initial_load_rebuilds_the_counters_after_its_copy(postgres, org_a, org_b, monkeypatch):
    monkeypatch.setattr(national, "DEFER_INDEXES_MIN_BYTES", 0)  # take the deferred-index path
    text = "ods_code," + HEADER + "RJ1,a@rj1.nhs.uk,A,user,5,1,,\nRRV,b@rrv.nhs.uk,B,user,7,1,,\n"
    result = inventory_import(source=io.BytesIO(text.encode()), organisation=None, actor=None)
    assert result.created == 2
    assert counters_current() == {
        (org_a.pk, 0, M.INVENTORIED, False): (1, 5),
        (org_b.pk, 0, M.INVENTORIED, False): (1, 7),
    }
    with postgres.cursor() as cursor:  # the insert trigger is back on for the next writer
        cursor.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'mailbox_counter_insert'")
        assert cursor.fetchone()[0] == "O"
    ready_mailboxes(org_a, 2, size=1)
    assert_counters_match()


def test_approval_moves_and_execution_keep_the_counters(
    db, org_a, org_b, officer, approver, admin_a, settings
):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"throughput_bytes_per_s": 0}}
    ready_mailboxes(org_a, 4, size=10)
    ready_mailboxes(org_b, 2, size=10)
    wave = wave_with(org_a, org_b)
    other = wave_with(org_b, name="Evening Tue 2 Jun 2026", day=dt.date(2026, 6, 2))
    mover = Mailbox.objects.filter(organisation=org_a).first()
    wave_move_mailbox(actor=officer, mailbox=mover, target=other, confirm=True)
    assert_counters_match()
    wave_propose(wave=wave, actor=officer)
    wave_go(wave=wave, organisation=org_a, actor=admin_a)
    wave_go(wave=wave, organisation=org_b, actor=officer, reason="confirmed by phone")
    wave_approve(wave=wave, actor=approver)
    assert_counters_match()
    assert counters_current()[(org_a.pk, wave.pk, M.SCHEDULED, False)] == (3, 30)

    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    wave.refresh_from_db()
    ids = mailbox_claim(wave=wave, phase=SYNC)
    assert_counters_match()
    for pk in ids:
        mailbox_run(mailbox_id=pk, phase=SYNC, engine=SimulatedEngine(instant=True))
    assert_counters_match()
    assert counters_current()[(org_a.pk, wave.pk, M.SYNCED, False)] == (3, 30)


def test_failures_retries_and_roll_backs_keep_the_counters(db, org_a, admin_a):
    wave, mailboxes = approved_wave(org_a, 3)
    wave_tick()
    failing = SimulatedEngine(instant=True, failure_rates={"AUTH_FAILED": 1.0})
    for mailbox in mailboxes:
        mailbox_run(mailbox_id=mailbox.pk, phase=SYNC, engine=failing)
    assert_counters_match()
    assert counters_current()[(org_a.pk, wave.pk, M.FAILED, True)][0] == 3
    first, second = Mailbox.objects.filter(wave=wave).order_by("id")[:2]
    mailbox_retry(mailbox=first, actor=admin_a)
    mailbox_rollback(mailbox=second, actor=admin_a)
    assert_counters_match()
    # needed attention stays counted after the retry, and after the roll-back out of the wave
    assert counters_current()[(org_a.pk, wave.pk, M.SCHEDULED, True)] == (1, first.size_bytes)
    assert counters_current()[(org_a.pk, 0, M.READY, True)] == (1, second.size_bytes)


def test_rebuild_repairs_counters_that_were_tampered_with(db, org_a):
    ready_mailboxes(org_a, 3)
    MailboxCounter.objects.update(mailboxes=999)
    assert counters_current() != counters_fresh()
    counters_rebuild()
    assert_counters_match()


@pytest.mark.django_db(transaction=True)
def test_counters_hold_across_committed_transactions(org_a):
    ready_mailboxes(org_a, 2)
    Mailbox.objects.filter(organisation=org_a).update(state=M.BLOCKED)
    assert_counters_match()


def test_counters_survive_a_later_migration_that_alters_the_mailbox_table(db, org_a):
    from django.db import connection

    from migrations_app.services.counters import counters_ensure_sqlite_triggers

    if connection.vendor != "sqlite":  # PostgreSQL alters in place: the triggers stay and keep counting
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE migrations_app_mailbox ADD COLUMN later_field integer")
            cursor.execute("ALTER TABLE migrations_app_mailbox DROP COLUMN later_field")
        ready_mailboxes(org_a, 3)
        Mailbox.objects.filter(organisation=org_a).update(state=M.BLOCKED)
        assert_counters_match()
        return
    # SQLite rebuilds the table (dropping its triggers); post_migrate puts them back
    ready_mailboxes(org_a, 2)
    with connection.cursor() as cursor:  # what a table rebuild by a later migration does to them
        for name in ("mailbox_counter_insert", "mailbox_counter_update", "mailbox_counter_delete"):
            cursor.execute(f"DROP TRIGGER {name}")
    ready_mailboxes(org_a, 3)  # not counted: no trigger
    assert counters_current() != counters_fresh()
    counters_ensure_sqlite_triggers(using="default")  # post_migrate
    assert_counters_match()
    ready_mailboxes(org_a, 1)
    assert_counters_match()
