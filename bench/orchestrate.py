"""What does the control plane cost, and can it carry an evening's copies? One evening wave through real
Celery worker processes, the real broker and PostgreSQL, the simulated engine, in two regimes:

- `instant`: copies take no time, so tasks carry up to 100 mailboxes and commits many transitions: the
  control plane's own cost (claims, leases, transitions, events) for 22,000 mailboxes. A favourable regime:
  production's copies take minutes.
- `inflight` (the realistic one): every copy holds its slot for `--copy-seconds` while it does I/O and
  reports progress every `--progress-seconds`, up to `--in-flight` of them at once (1,000), carried by
  `--workers` worker processes with the threads pool (`--threads` each) and a connection pool of
  `--pool-size` per process, copies on a queue of their own (CELERY_COPY_QUEUE) and one prefork worker for the
  rest (ticks, pumps). Sampled every 2 s: worker RSS (every process of each worker), PostgreSQL
  connections in use, mailboxes in flight, and the heartbeat lag of every running copy (now - heartbeat_at).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_orchestrate_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python -m bench.orchestrate --regime both --mailboxes 22000

DATABASE_URL must name a scratch database containing "bench" (its schema is dropped); the broker's queue is
purged first. The wave is approved with its window open; the clock starts when the beat's tick is sent (the
same task the beat sends every minute) and stops when the wave is completed. After that every mailbox is
checked: migrated, each transition recorded once, none run twice. One JSON line per regime:

    {"bench": "orchestrate", "regime": "instant", "mailboxes": N, "seconds": S, "mailboxes_per_s": R, ...}
    {"bench": "orchestrate", "regime": "inflight", "mailboxes": N, "seconds": S, "ideal_s": I,
     "efficiency": I/S, "peak_in_flight": F, "peak_worker_rss_mb": M, "peak_db_connections": C,
     "heartbeat_lag_p99_s": L, "claims_per_s": K, ...}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

from bench._generate import organisations_and_mailboxes
from bench._scratch import log, reset_schema, scratch_database_url
from bench._workers import WorkerProcess, worker_env

MAILBOX_BYTES = 1_000_000_000  # the in-flight regime's mailboxes: the programme's typical 1 GB


def generate(cursor, *, mailboxes: int, orgs: int) -> None:
    """Organisations of an evening's mix, in Sync & Switch, and their ready mailboxes, set-based."""
    organisations_and_mailboxes(
        cursor, mailboxes=mailboxes, orgs=orgs, prefix="B", status="migrating", stage="sync_switch",
        state="ready", trusts=3,
    )  # fmt: skip


def process_group_rss_mb(pgid: int) -> float:
    """The resident memory of every process in a process group (a worker and its children), in MB."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total / 1024


class Sampler(threading.Thread):
    """Every `every` seconds, on a connection of its own (not counted): in flight, heartbeat lags,
    connections in use by others than this benchmark, workers' RSS."""

    def __init__(self, database_url: str, workers: list[WorkerProcess], exclude_pids: set[int], every=2.0):
        super().__init__(daemon=True)
        self.database_url = database_url
        self.workers = workers
        self.exclude = exclude_pids
        self.every = every
        self.stop_event = threading.Event()
        self.lags: list[float] = []
        self.peak_in_flight = 0
        self.peak_connections = 0
        self.peak_rss_mb = 0.0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            exclude = list(self.exclude | {conn.info.backend_pid})
            while not self.stop_event.wait(self.every):
                rows = conn.execute(
                    "SELECT extract(epoch FROM now() - heartbeat_at) FROM migrations_app_mailbox "
                    "WHERE state IN ('syncing', 'cutover', 'verifying') AND lease <> ''"
                ).fetchall()
                self.lags.extend(float(lag) for (lag,) in rows)
                self.peak_in_flight = max(self.peak_in_flight, len(rows))
                (connections,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND NOT pid = ANY(%s)",
                    [exclude],
                ).fetchone()
                self.peak_connections = max(self.peak_connections, connections)
                rss = sum(process_group_rss_mb(w.pid) for w in self.workers)
                self.peak_rss_mb = max(self.peak_rss_mb, rss)

    def lag_p99(self) -> float:
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def run_wave(args, regime: str, database_url: str, broker_url: str) -> dict:
    import datetime as dt

    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from migrations_app.models import Event, Mailbox, Organisation, Wave
    from portal.celery import app

    inflight = regime == "inflight"
    mailboxes = args.mailboxes
    reset_schema()
    with connection.cursor() as cursor:
        generate(cursor, mailboxes=mailboxes, orgs=args.orgs)
        if inflight:  # every copy the same size, so its time is --copy-seconds
            cursor.execute("UPDATE migrations_app_mailbox SET size_bytes = %s", [MAILBOX_BYTES])
    now = timezone.now()
    wave = Wave.objects.create(
        name="Bench evening",
        kind=Wave.Kind.EVENING,
        status=Wave.Status.APPROVED,
        starts_at=now - dt.timedelta(minutes=1),
        ends_at=now + dt.timedelta(hours=12),
        capacity_mailboxes=mailboxes,
        capacity_bytes=10**16,
        planned_mailboxes=mailboxes,
    )
    Mailbox.objects.update(wave=wave, state=Mailbox.State.SCHEDULED)  # stamped, as approval does
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SELECT pg_backend_pid()")
        (own_pid,) = cursor.fetchone()
    app.control.purge()
    log(f"{regime}: {Mailbox.objects.count():,} mailboxes in {Organisation.objects.count()} organisations")

    if inflight:
        throughput = MAILBOX_BYTES / args.copy_seconds
        env = worker_env(
            database_url,
            broker_url,
            SIMULATED_THROUGHPUT=str(int(throughput)),
            SIMULATED_CHUNK_BYTES=str(int(throughput * args.progress_seconds)),
            MIGRATION_MAX_CONCURRENCY=str(args.in_flight),
            DB_POOL_MAX_SIZE=str(args.pool_size),
            CELERY_COPY_QUEUE="copies",
        )
        pool, concurrency, processes = "threads", args.threads, args.workers
    else:
        env = worker_env(database_url, broker_url, SIMULATED_THROUGHPUT="0", MIGRATION_MAX_CONCURRENCY="1000")
        pool, concurrency, processes = "prefork", args.concurrency, args.instant_workers
    with tempfile.TemporaryDirectory(prefix="bench-orchestrate-") as tmp:
        tmp = args.log_dir or tmp
        workers = [
            WorkerProcess(
                f"bench{regime}{i}",
                Path(tmp),
                env=env,
                pool=pool,
                concurrency=concurrency,
                queues="copies" if inflight else "",
            )
            for i in range(processes)
        ]
        if inflight:  # as deployed: the copies' workers, and one prefork worker for the ticks and pumps
            workers.append(
                WorkerProcess(
                    f"bench{regime}rest", Path(tmp), env=env, pool="prefork", concurrency=1, queues="celery"
                )
            )
        sampler = Sampler(database_url, workers, {own_pid})
        try:
            for worker in workers:
                worker.wait_ready(timeout=120)
            log(f"{len(workers)} worker process(es), {pool} x {concurrency}; sending the tick")
            sampler.start()
            started = time.perf_counter()
            app.send_task("migrations_app.tasks.wave_tick")
            deadline = started + args.timeout
            next_log = started
            while time.perf_counter() < deadline:
                status = Wave.objects.filter(pk=wave.pk).values_list("status", flat=True).get()
                if status == Wave.Status.COMPLETED:
                    break
                time.sleep(0.25)
                if time.perf_counter() >= next_log:
                    migrated = Mailbox.objects.filter(wave=wave, state="migrated").count()
                    log(
                        f"{time.perf_counter() - started:6.1f} s {status}: {migrated:,} migrated, in flight "
                        f"peak {sampler.peak_in_flight}, connections peak {sampler.peak_connections}, "
                        f"RSS peak {sampler.peak_rss_mb:.0f} MB"
                    )
                    next_log += 15 if inflight else 5
            else:
                raise SystemExit(f"the wave did not complete within {args.timeout} s")
            seconds = time.perf_counter() - started
        finally:
            sampler.stop_event.set()
            for worker in workers:
                worker.stop()

    states = dict(Mailbox.objects.filter(wave=wave).values_list("state").annotate(n=Count("id")))
    if states != {Mailbox.State.MIGRATED: mailboxes}:
        raise SystemExit(f"not every mailbox migrated: {states}")
    twice = (
        Event.objects.filter(wave_id=wave.pk, action="mailbox.migrated")
        .values("mailbox_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    if twice:
        raise SystemExit(f"{twice} mailbox(es) migrated more than once")
    claims = Event.objects.filter(wave_id=wave.pk, action="mailbox.claimed").count()
    log(f"checked: {mailboxes:,} migrated, each once; {Event.objects.count():,} events")
    line = {
        "bench": "orchestrate",
        "regime": regime,
        "mailboxes": mailboxes,
        "seconds": round(seconds, 2),
        "mailboxes_per_s": round(mailboxes / seconds, 1),
        "claims_per_s": round(claims / seconds, 1),
    }
    if inflight:
        ideal = math.ceil(mailboxes / args.in_flight) * args.copy_seconds
        line.update(
            ideal_s=ideal,
            efficiency=round(ideal / seconds, 3),
            in_flight=args.in_flight,
            copy_seconds=args.copy_seconds,
            peak_in_flight=sampler.peak_in_flight,
            peak_worker_rss_mb=round(sampler.peak_rss_mb, 1),
            peak_db_connections=sampler.peak_connections,
            heartbeat_lag_p99_s=round(sampler.lag_p99(), 1),
            workers=f"{args.workers} x threads {args.threads}, pool {args.pool_size}",
        )
    line["load"] = [round(x, 2) for x in os.getloadavg()]
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regime", choices=["instant", "inflight", "both"], default="both")
    parser.add_argument("--mailboxes", type=int, default=22_000)
    parser.add_argument("--orgs", type=int, default=120)
    parser.add_argument("--instant-workers", type=int, default=1, help="instant: worker processes")
    parser.add_argument("--concurrency", type=int, default=3, help="instant: prefork children per worker")
    parser.add_argument("--in-flight", type=int, default=1000, help="inflight: copies at once (the cap)")
    parser.add_argument("--copy-seconds", type=float, default=120, help="inflight: one copy's time")
    parser.add_argument(
        "--progress-seconds", type=float, default=5, help="inflight: between progress reports"
    )
    parser.add_argument("--workers", type=int, default=2, help="inflight: worker processes")
    parser.add_argument("--threads", type=int, default=500, help="inflight: threads per worker process")
    parser.add_argument(
        "--pool-size", type=int, default=25, help="inflight: database connections per process"
    )
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--log-dir", help="keep the workers' logs here (default: a temporary folder)")
    args = parser.parse_args()
    database_url = scratch_database_url("portal_orchestrate_bench")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if not broker_url.startswith("redis://"):
        raise SystemExit(
            "This benchmark needs the real broker: set CELERY_BROKER_URL=redis://127.0.0.1:6379/12"
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    regimes = ["instant", "inflight"] if args.regime == "both" else [args.regime]
    for regime in regimes:
        print(json.dumps(run_wave(args, regime, database_url, broker_url)), flush=True)


if __name__ == "__main__":
    main()
