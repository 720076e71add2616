"""Copies in flight: one worker process with the threads pool carries many slow copies at once on a handful of
pooled database connections (a copy borrows one for each write and gives it back), every lease kept alive by
the process's one hub thread. Real worker process, Redis and PostgreSQL."""

import datetime as dt
import threading
import time

import psycopg
import pytest
from django.db import connection
from django.db.models import Count

from bench._workers import WorkerProcess, database_url, worker_env
from migrations_app.models import Event, Mailbox
from migrations_app.services.execution import wave_tick
from tests.conftest import skip_or_fail
from tests.execution_fixtures import approved_wave

MAILBOXES = 24
POOL = 4


@pytest.mark.django_db(transaction=True)
def test_a_threads_worker_carries_many_copies_on_a_few_pooled_connections(
    real_broker, org_a, tmp_path, settings
):
    if connection.vendor != "postgresql":
        skip_or_fail("the connection pool is PostgreSQL's (psycopg_pool): set DATABASE_URL=postgres://...")
    if not real_broker.conf.broker_url.startswith("redis://"):
        skip_or_fail("needs Redis: set CELERY_BROKER_URL=redis://...")
    wave, _ = approved_wave(org_a, MAILBOXES, starts_in=dt.timedelta(minutes=-1))
    Mailbox.objects.filter(wave=wave).update(size_bytes=40_000_000, item_count=400)  # 4 s a copy
    settings.MIGRATION_TASK_SECONDS = 1  # each mailbox a task of its own, as real copies are
    settings.MIGRATION_MAX_CONCURRENCY = MAILBOXES
    settings.MIGRATION_ENGINE_OPTIONS = {
        "simulated": {"throughput_bytes_per_s": 10_000_000, "chunk_bytes": 5_000_000}
    }  # the first claim is made here: sized as the worker sizes them
    url = database_url(connection.settings_dict)
    env = worker_env(
        url,
        real_broker.conf.broker_url,
        SIMULATED_THROUGHPUT="10000000",
        SIMULATED_CHUNK_BYTES="5000000",  # a progress report every half second
        MIGRATION_TASK_SECONDS="1",
        MIGRATION_MAX_CONCURRENCY=str(MAILBOXES),
        MIGRATION_PROGRESS_SECONDS="0.2",
        MIGRATION_HEARTBEAT_SECONDS="1",
        DB_POOL_MAX_SIZE=str(POOL),
    )
    worker = WorkerProcess("threads", tmp_path, env=env, pool="threads", concurrency=MAILBOXES)
    peaks = {"in_flight": 0, "connections": 0}
    done = threading.Event()

    def sample():
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.wait(0.2):
                (in_flight,) = conn.execute(
                    "SELECT count(*) FROM migrations_app_mailbox WHERE state = 'syncing' AND lease <> ''"
                ).fetchone()
                (used,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> %s",
                    [own_pid],
                ).fetchone()
                peaks["in_flight"] = max(peaks["in_flight"], in_flight)
                peaks["connections"] = max(peaks["connections"], used)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own_pid,) = cursor.fetchone()
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        worker.wait_ready()
        sampler.start()
        wave_tick()  # the beat's tick: start the wave, claim and queue its copies
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if Mailbox.objects.filter(wave=wave, state=Mailbox.State.MIGRATED).count() == MAILBOXES:
                break
            time.sleep(0.3)
    finally:
        done.set()
        worker.stop()
    states = dict(Mailbox.objects.filter(wave=wave).values_list("state").annotate(n=Count("id")))
    assert states == {Mailbox.State.MIGRATED: MAILBOXES}, worker.log()[-3000:]
    migrated = Event.objects.filter(wave_id=wave.pk, action="mailbox.migrated")
    assert migrated.count() == MAILBOXES  # each once
    assert peaks["in_flight"] >= MAILBOXES * 2 // 3  # the copies really ran side by side...
    assert 1 <= peaks["connections"] <= POOL  # ...on no more connections than the pool holds
