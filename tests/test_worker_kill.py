"""A worker killed (SIGKILL) in the middle of a wave: the wave still completes, nothing is lost, and no
mailbox is ever copied by two runs at once. Real worker processes, Redis and PostgreSQL."""

import collections
import datetime as dt
import time

import pytest
from django.db import connection

from bench._workers import WorkerProcess, database_url, worker_env
from migrations_app.models import Event, Mailbox, Wave
from migrations_app.services.execution import wave_tick
from tests.conftest import skip_or_fail
from tests.execution_fixtures import approved_wave

M = Mailbox.State
MAILBOXES = 40


def _runs(log_path) -> dict[str, list[tuple[float, float | None, int]]]:
    """{mailbox: [(start, end or None, pid)]} from the simulated engine's run log."""
    runs: dict[str, list] = collections.defaultdict(list)
    open_runs: dict[tuple[int, str], float] = {}
    for line in log_path.read_text().splitlines():
        at, pid, what, email = line.split()
        if what == "start":
            open_runs[(int(pid), email)] = float(at)
        else:
            runs[email].append((open_runs.pop((int(pid), email)), float(at), int(pid)))
    for (pid, email), started in open_runs.items():
        runs[email].append((started, None, pid))
    return runs


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_wave_loses_nothing_and_no_mailbox_runs_twice_at_once(
    real_broker, org_a, tmp_path, settings
):
    if connection.vendor != "postgresql":
        skip_or_fail("the kill-a-worker test needs PostgreSQL: set DATABASE_URL=postgres://...")
    if not real_broker.conf.broker_url.startswith("redis://"):
        skip_or_fail("the kill-a-worker test needs Redis: set CELERY_BROKER_URL=redis://...")
    wave, mailboxes = approved_wave(org_a, MAILBOXES, starts_in=dt.timedelta(minutes=-1))
    Mailbox.objects.filter(wave=wave).update(size_bytes=30_000_000, item_count=300)  # 0.15 s each
    run_log = tmp_path / "runs.log"
    # The first claim is made here, so its batches are sized by these settings: the same as the workers'.
    settings.MIGRATION_TASK_SECONDS = 1  # batches of about six mailboxes, shared by both workers
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"throughput_bytes_per_s": 200_000_000}}
    env = worker_env(
        database_url(connection.settings_dict),
        real_broker.conf.broker_url,
        SIMULATED_THROUGHPUT="200000000",
        SIMULATED_RUN_LOG=str(run_log),
        MIGRATION_TASK_SECONDS="1",  # batches of about six mailboxes
        MIGRATION_PROGRESS_SECONDS="0.1",
        MIGRATION_HEARTBEAT_STALE_SECONDS="3",
        MIGRATION_HEARTBEAT_SECONDS="1",
        MIGRATION_RECONCILE_SECONDS="1",
    )
    victim = WorkerProcess("victim", tmp_path, env=env)
    survivor = WorkerProcess("survivor", tmp_path, env=env, beat=True)
    try:
        victim.wait_ready()
        survivor.wait_ready()
        wave_tick()  # what the beat's every-minute tick does: start the wave, queue the first batches

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the victim is half way through a copy
            runs = _runs(run_log) if run_log.exists() else {}
            busy = [
                e for e, rs in runs.items() if any(pid == victim.pid and end is None for _, end, pid in rs)
            ]
            done = sum(1 for rs in runs.values() for _, end, _ in rs if end is not None)
            if busy and done >= 5:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the victim never got to work:\n{victim.log()[-1500:]}\n{survivor.log()[-3000:]}")
        victim.kill()
        killed_at = time.time()

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            wave.refresh_from_db()
            if wave.status == Wave.Status.COMPLETED:
                break
            time.sleep(0.2)
        else:
            states = collections.Counter(Mailbox.objects.filter(wave=wave).values_list("state", flat=True))
            pytest.fail(f"the wave did not complete after the kill: {states}\n{survivor.log()[-3000:]}")
    finally:
        victim.kill()
        survivor.stop()

    # Nothing lost: every mailbox migrated, completely, and recorded as migrated exactly once.
    rows = Mailbox.objects.filter(wave=wave).values_list("email", "state", "items_copied", "bytes_copied")
    assert {(state, items, size) for _, state, items, size in rows} == {(M.MIGRATED, 300, 30_000_000)}
    migrated = collections.Counter(
        Event.objects.filter(wave_id=wave.pk, action="mailbox.migrated").values_list("mailbox_id", flat=True)
    )
    assert sorted(migrated) == sorted(m.pk for m in mailboxes) and set(migrated.values()) == {1}
    # Every transition recorded, in an unbroken chain from scheduled to migrated.
    for mailbox in mailboxes:
        steps = list(
            Event.objects.filter(mailbox_id=mailbox.pk)
            .exclude(from_state="", to_state="")
            .order_by("id")
            .values_list("from_state", "to_state")
        )
        assert steps[0][0] == M.SCHEDULED and steps[-1][1] == M.MIGRATED, steps
        assert all(a[1] == b[0] for a, b in zip(steps, steps[1:], strict=False)), steps
    # The kill hit a copy in progress, and the reconciler gave that mailbox to the survivor.
    requeued = set(
        Event.objects.filter(wave_id=wave.pk, action="mailbox.requeued").values_list("subject", flat=True)
    )
    assert set(busy) <= requeued
    # No mailbox was ever copied by two runs at once (a killed run counts as running until the kill).
    for email, spans in _runs(run_log).items():
        spans = sorted((start, end if end is not None else killed_at) for start, end, _ in spans)
        for (_, first_end), (second_start, _) in zip(spans, spans[1:], strict=False):
            assert first_end <= second_start, f"{email} copied by two runs at once: {spans}"
