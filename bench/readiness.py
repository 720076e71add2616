"""How fast can the programme check readiness? 100,000 mailboxes over 1,000 organisations, one readiness check
per organisation (as each trust admin would press the button), run by real Celery worker processes through
the real broker and PostgreSQL, the simulated engine's pre-flight instant and blocking 2% of mailboxes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_readiness_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python -m bench.readiness --mailboxes 100000 --orgs 1000

DATABASE_URL must name a scratch database containing "bench" (its schema is dropped); the broker's queue is
purged first. The clock starts before the first check is started and stops when every check has finished;
then every mailbox is checked: ready or blocked, with a check time, blocked ones with a code, one event each.
Prints one JSON line (the load average beside it: other work shares this machine):

    {"bench": "readiness", "mailboxes": N, "seconds": S, "mailboxes_per_s": R, "blocked": B, "load_avg": [...]}
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench._generate import organisations_and_mailboxes
from bench._scratch import log, reset_schema, scratch_database_url
from bench._workers import WorkerProcess, worker_env

RATES = "NOT_LICENSED=0.01,TARGET_MISSING=0.005,OVER_QUOTA=0.003,ITEM_TOO_LARGE=0.002"  # 2% in all


def generate(cursor, *, mailboxes: int, orgs: int) -> None:
    """Organisations in readiness, every gate met, and their inventoried mailboxes, set-based."""
    organisations_and_mailboxes(
        cursor, mailboxes=mailboxes, orgs=orgs, prefix="R", status="enrolled", stage="readiness",
        state="inventoried", trusts=10,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (celery worker instances)")
    parser.add_argument("--concurrency", type=int, default=3, help="prefork children per worker")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--scope",
        choices=["organisations", "programme"],
        default="organisations",
        help="one check per organisation (each trust presses the button), or one programme-wide check of every "
        "mailbox not yet checked (the programme office, after a national load)",
    )
    parser.add_argument("--log-dir", help="keep the workers' logs here (default: a temporary folder)")
    args = parser.parse_args()
    database_url = scratch_database_url("portal_readiness_bench")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if not broker_url.startswith("redis://"):
        raise SystemExit(
            "This benchmark needs the real broker: set CELERY_BROKER_URL=redis://127.0.0.1:6379/1"
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.db import connection, transaction
    from django.db.models import Count, Q

    from migrations_app.models import Event, Mailbox, Organisation, ReadinessCheck
    from migrations_app.services.readiness.checks import readiness_check_start
    from portal.celery import app

    reset_schema()
    with connection.cursor() as cursor:
        generate(cursor, mailboxes=args.mailboxes, orgs=args.orgs)
        cursor.execute("ANALYZE")
    app.control.purge()
    organisations = list(Organisation.objects.order_by("id"))
    log(f"{Mailbox.objects.count():,} inventoried mailboxes in {len(organisations):,} organisations")

    env = worker_env(database_url, broker_url, SIMULATED_THROUGHPUT="0", SIMULATED_PREFLIGHT_RATES=RATES)
    with tempfile.TemporaryDirectory(prefix="bench-readiness-") as tmp:
        tmp = args.log_dir or tmp
        workers = [
            WorkerProcess(f"bench{i}", Path(tmp), env=env, pool="prefork", concurrency=args.concurrency)
            for i in range(args.workers)
        ]
        try:
            for worker in workers:
                worker.wait_ready()
            log(
                f"{len(workers)} worker process(es) x {args.concurrency} ready; starting the checks ({args.scope})"
            )
            started = time.perf_counter()
            if args.scope == "programme":
                with transaction.atomic():
                    readiness_check_start(actor=None, unchecked=True)
            else:
                for organisation in organisations:
                    with transaction.atomic():  # each check's task is sent when its row is committed
                        readiness_check_start(actor=None, organisation=organisation)
            log(f"{time.perf_counter() - started:.1f} s to start them")
            deadline = started + args.timeout
            last = -1
            while time.perf_counter() < deadline:
                open_checks = ReadinessCheck.objects.filter(status__in=("queued", "running")).count()
                if not open_checks:
                    break
                elapsed = int(time.perf_counter() - started)
                if elapsed % 5 == 0 and elapsed != last:
                    done = Mailbox.objects.filter(checked_at__isnull=False).count()
                    log(f"{elapsed:4d} s: {done:,} checked, {open_checks:,} checks still open")
                    last = elapsed
                time.sleep(0.25)
            else:
                raise SystemExit(f"the checks did not finish within {args.timeout} s")
            seconds = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.stop()

    states = dict(Mailbox.objects.values_list("state").annotate(n=Count("id")))
    if set(states) - {Mailbox.State.READY, Mailbox.State.BLOCKED} or sum(states.values()) != args.mailboxes:
        raise SystemExit(f"not every mailbox was checked: {states}")
    if Mailbox.objects.filter(Q(checked_at__isnull=True) | Q(state="blocked", blocked_code="")).exists():
        raise SystemExit("a mailbox has no check time, or is blocked without a code")
    failed = ReadinessCheck.objects.exclude(status="succeeded").count()
    counted = ReadinessCheck.objects.aggregate(
        r=django.db.models.Sum("ready"), b=django.db.models.Sum("blocked")
    )
    blocked = states.get(Mailbox.State.BLOCKED, 0)
    if failed or counted["b"] != blocked or counted["r"] != states.get(Mailbox.State.READY, 0):
        raise SystemExit(
            f"the checks' counts disagree with the mailboxes: {counted} vs {states}, {failed} failed"
        )
    events = Event.objects.filter(action__in=("mailbox.ready", "mailbox.blocked")).count()
    if events != args.mailboxes:
        raise SystemExit(f"{events:,} state-change events for {args.mailboxes:,} mailboxes")
    log(f"checked: {args.mailboxes:,} mailboxes, {blocked:,} blocked, one event each")
    print(
        json.dumps(
            {
                "bench": "readiness",
                "scope": args.scope,
                "mailboxes": args.mailboxes,
                "seconds": round(seconds, 2),
                "mailboxes_per_s": round(args.mailboxes / seconds, 1),
                "blocked": blocked,
                "load_avg": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
