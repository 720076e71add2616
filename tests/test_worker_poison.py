"""A poison pill: a mailbox whose copy kills its worker process every time (a message that runs it out of
memory, say). A real prefork worker, Redis and PostgreSQL: the broker redelivers the batch after each death;
after MIGRATION_MAX_DELIVERIES deliveries the mailbox fails with WORKER_LOST, naming the item it was on,
and no further worker is killed; the wave's other mailboxes are copied as usual."""

import datetime as dt
import os
import time

import pytest
from django.db import connection

from bench._workers import WorkerProcess, database_url, worker_env
from migrations_app.models import Event, Mailbox
from migrations_app.services.execution import wave_tick
from tests.conftest import skip_or_fail
from tests.execution_fixtures import approved_wave

M = Mailbox.State


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_kills_its_worker_three_times_fails_its_mailbox_with_worker_lost(
    real_broker, org_a, tmp_path, settings
):
    if connection.vendor != "postgresql":
        skip_or_fail("the poison-pill test needs PostgreSQL: set DATABASE_URL=postgres://...")
    if not real_broker.conf.broker_url.startswith("redis://"):
        skip_or_fail("the poison-pill test needs Redis: set CELERY_BROKER_URL=redis://...")
    settings.MIGRATION_TASK_MAILBOXES = 1  # a task per mailbox: the poison pill is a batch of its own
    wave, [poison, healthy] = approved_wave(
        org_a, 2, starts_in=dt.timedelta(hours=2)
    )  # pre-stage: a sync, no switch
    env = worker_env(
        database_url(connection.settings_dict),
        real_broker.conf.broker_url,
        CACHE_URL=os.environ.get("CACHE_URL", ""),
        SIMULATED_THROUGHPUT="0",
        SIMULATED_DIE_ON=poison.email,
        MIGRATION_MAX_DELIVERIES="3",
        MIGRATION_TASK_MAILBOXES="1",
        # a dead run's lease goes stale quickly and the beat's reconciler requeues it every second
        MIGRATION_HEARTBEAT_STALE_SECONDS="2",
        MIGRATION_HEARTBEAT_SECONDS="0.5",
        MIGRATION_RECONCILE_SECONDS="1",
    )
    if not env["CACHE_URL"].startswith("redis://"):
        skip_or_fail("the poison-pill test needs a shared cache: set CACHE_URL=redis://...")
    worker = WorkerProcess("poisoned", tmp_path, env=env, pool="prefork", concurrency=1, beat=True)
    try:
        worker.wait_ready()
        wave_tick()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            poison.refresh_from_db()
            healthy.refresh_from_db()
            if poison.state == M.FAILED and healthy.state == M.SYNCED:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"poison {poison.state}, healthy {healthy.state}:\n{worker.log()[-3000:]}")
        time.sleep(1)  # had it been redelivered once more, the worker would be dying again now
        log = worker.log()
    finally:
        worker.stop()

    assert poison.last_error_code == "WORKER_LOST"
    assert "died 3 times" in poison.last_error_message, poison.last_error_message
    assert "INBOX item 4242" in poison.last_error_message and "Theatre video" in poison.last_error_message
    assert log.count("exited with 'exitcode 137'") == 3  # three children died; the fourth run failed it
    failed = Event.objects.get(mailbox_id=poison.pk, action="mailbox.failed")
    assert (failed.from_state, failed.data["code"]) == (M.SYNCING, "WORKER_LOST")
    assert healthy.last_error_code == ""
