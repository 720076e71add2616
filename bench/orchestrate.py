"""What does the control plane cost? One full evening wave, simulated engine at zero copy time, through real
Celery worker processes, the real broker and PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_orchestrate_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python -m bench.orchestrate --mailboxes 22000

DATABASE_URL must name a scratch database containing "bench" (its schema is dropped); the broker's queue is
purged first. The wave is approved with its window open; the clock starts when the beat's tick is sent (the
same task the beat sends every minute) and stops when the wave is completed. After that every mailbox is
checked: migrated, each transition recorded once, none run twice. Prints one JSON line:

    {"bench": "orchestrate", "mailboxes": N, "seconds": S, "mailboxes_per_s": R}
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench._scratch import log, reset_schema, scratch_database_url
from bench._workers import WorkerProcess, worker_env


def generate(cursor, *, mailboxes: int, orgs: int) -> None:
    """Organisations of an evening's mix (a few trusts, many practices) and their mailboxes, set-based."""
    cursor.execute(
        """
        INSERT INTO migrations_app_organisation
            (ods_code, name, kind, region, status, preferred_window, priority, gate_mfa_enforced,
             gate_acceptable_use, gate_licences_assigned, gate_service_desk_briefed, notes, created_at, updated_at,
             stage)
        SELECT 'B' || lpad(i::text, 5, '0'), 'Organisation ' || i,
               CASE WHEN i <= 3 THEN 'trust' ELSE 'gp_practice' END, 'london', 'migrating', 'any', 50,
               true, true, true, true, '', now(), now(), 'sync_switch'
        FROM generate_series(1, %(orgs)s) AS i
        """,
        {"orgs": orgs},
    )
    cursor.execute(
        """
        INSERT INTO migrations_app_mailbox
            (organisation_id, email, display_name, kind, size_bytes, item_count, state, source_identity,
             created_at, updated_at)
        SELECT o.id, 'user' || i || '@' || lower(o.ods_code) || '.nhs.uk', 'User ' || i, 'user',
               500000000::bigint + (i %% 97) * 20000000::bigint, 10000 + i %% 5000, 'ready', '', now(), now()
        FROM generate_series(1, %(mailboxes)s) AS i
        JOIN migrations_app_organisation o ON o.ods_code = 'B' || lpad((1 + i %% %(orgs)s)::text, 5, '0')
        """,
        {"mailboxes": mailboxes, "orgs": orgs},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=22_000)
    parser.add_argument("--orgs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (celery worker instances)")
    parser.add_argument("--concurrency", type=int, default=3, help="prefork children per worker")
    parser.add_argument("--timeout", type=float, default=900)
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
    import datetime as dt

    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from migrations_app.models import Event, Mailbox, Organisation, Wave
    from portal.celery import app

    reset_schema()
    with connection.cursor() as cursor:
        generate(cursor, mailboxes=args.mailboxes, orgs=args.orgs)
    now = timezone.now()
    wave = Wave.objects.create(
        name="Bench evening",
        kind=Wave.Kind.EVENING,
        status=Wave.Status.APPROVED,
        starts_at=now - dt.timedelta(minutes=1),
        ends_at=now + dt.timedelta(hours=4),
        capacity_mailboxes=args.mailboxes,
        capacity_bytes=10**15,
        planned_mailboxes=args.mailboxes,
    )
    Mailbox.objects.update(wave=wave, state=Mailbox.State.SCHEDULED)  # stamped, as approval does
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    app.control.purge()
    log(f"{Mailbox.objects.count():,} mailboxes in {Organisation.objects.count()} organisations, one wave")

    env = worker_env(database_url, broker_url, SIMULATED_THROUGHPUT="0", MIGRATION_MAX_CONCURRENCY="1000")
    with tempfile.TemporaryDirectory(prefix="bench-orchestrate-") as tmp:
        tmp = args.log_dir or tmp
        workers = [
            WorkerProcess(f"bench{i}", Path(tmp), env=env, pool="prefork", concurrency=args.concurrency)
            for i in range(args.workers)
        ]
        try:
            for worker in workers:
                worker.wait_ready()
            log(f"{len(workers)} worker process(es) x {args.concurrency} ready; sending the tick")
            started = time.perf_counter()
            app.send_task("migrations_app.tasks.wave_tick")
            deadline = started + args.timeout
            last = ""
            while time.perf_counter() < deadline:
                status = Wave.objects.filter(pk=wave.pk).values_list("status", flat=True).get()
                if status == Wave.Status.COMPLETED:
                    break
                time.sleep(0.25)
                line = f"{status}: {Mailbox.objects.filter(wave=wave, state='migrated').count():,} migrated"
                if line != last and int(time.perf_counter() - started) % 5 == 0:
                    log(f"{time.perf_counter() - started:5.1f} s {line}")
                    last = line
            else:
                raise SystemExit(f"the wave did not complete within {args.timeout} s")
            seconds = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.stop()

    states = dict(Mailbox.objects.filter(wave=wave).values_list("state").annotate(n=Count("id")))
    if states != {Mailbox.State.MIGRATED: args.mailboxes}:
        raise SystemExit(f"not every mailbox migrated: {states}")
    per_mailbox = (
        Event.objects.filter(wave_id=wave.pk, action="mailbox.migrated")
        .values("mailbox_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    if per_mailbox:
        raise SystemExit(f"{per_mailbox} mailbox(es) migrated more than once")
    log(f"checked: {args.mailboxes:,} migrated, each once; {Event.objects.count():,} events")
    print(
        json.dumps(
            {
                "bench": "orchestrate",
                "mailboxes": args.mailboxes,
                "seconds": round(seconds, 2),
                "mailboxes_per_s": round(args.mailboxes / seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
