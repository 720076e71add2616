"""An evening's worth of switches: one evening wave of 22,000 mailboxes cut over through the orchestrator (real
Celery worker processes, the real broker, PostgreSQL), each switched by the exchange-powershell switcher against
the fake Exchange endpoint (tests/fakes/exchange_powershell.py) taking --cmdlet-seconds per cmdlet (300 ms), with
--sessions sessions in all. The copy is the simulated engine at zero copy time, so the figure is the switch and
the control plane around it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_switch_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python -m bench.switch --mailboxes 22000

DATABASE_URL must name a scratch database containing "bench" (its schema is dropped). The session cap
(Endpoint.switch_sessions) holds per worker process, so the sessions are split over --processes prefork children
(16 = 4 x 4: while one process writes its batch's steps, the others' sessions keep switching). The clock starts when the tick is sent and stops when the wave is completed; then every mailbox is
checked: migrated, switched, Set-Mailbox run once for it. `floor_seconds` is what the cmdlets alone cost with every
session busy all the time (switches x cmdlet seconds / sessions): the same work with no control plane at all.
Prints one JSON line: {"bench": "switch", "switches", "seconds", "switches_per_s", "sessions", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench._scratch import log, reset_schema, scratch_database_url
from bench._workers import WorkerProcess, worker_env
from bench.orchestrate import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=22_000)
    parser.add_argument("--orgs", type=int, default=120)
    parser.add_argument("--sessions", type=int, default=16, help="PowerShell sessions in all")
    parser.add_argument("--processes", type=int, default=4, help="worker processes (prefork children)")
    parser.add_argument("--cmdlet-seconds", type=float, default=0.3, help="time the fake takes per cmdlet")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--log-dir", help="keep the workers' logs here (default: a temporary folder)")
    args = parser.parse_args()
    # stopped from outside (timeout, Ctrl-C): still stop the worker process group it started (finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.sessions % args.processes:
        raise SystemExit("--sessions must be a multiple of --processes (each process holds an equal share)")
    database_url = scratch_database_url("portal_switch_bench")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if not broker_url.startswith("redis://"):
        raise SystemExit(
            "This benchmark needs the real broker: set CELERY_BROKER_URL=redis://127.0.0.1:6379/7"
        )
    tmp = tempfile.mkdtemp(prefix="bench-switch-")
    exchange_dir = Path(tmp) / "exchange"
    env = worker_env(
        database_url,
        broker_url,
        SIMULATED_THROUGHPUT="0",
        MIGRATION_MAX_CONCURRENCY="1000",
        SWITCH_POWERSHELL_CLIENT="tests.fakes.exchange_powershell",
        FAKE_EXCHANGE_DIR=str(exchange_dir),
        FAKE_EXCHANGE_CMDLET_SECONDS=str(args.cmdlet_seconds),
    )
    # the endpoint's switch secret is written here and read by the workers: the same encryption key
    os.environ["PORTAL_ENCRYPTION_KEYS"] = env["PORTAL_ENCRYPTION_KEYS"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    import datetime as dt

    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from migrations_app.models import Endpoint, Event, Mailbox, Organisation, Wave
    from portal.celery import app
    from tests.fakes.exchange_powershell import FakeExchange

    reset_schema()
    with connection.cursor() as cursor:
        generate(cursor, mailboxes=args.mailboxes, orgs=args.orgs)
    source = Endpoint.objects.create(
        name="Trust Exchange 2013",
        kind=Endpoint.Kind.SIMULATED,
        role=Endpoint.Role.SOURCE,
        max_concurrency=5000,
        switch_method=Endpoint.SwitchMethod.EXCHANGE_POWERSHELL,
        switch_address="ex01.bench.nhs.uk",
        switch_username="svc-switch",
        switch_secret="bench-only",
        switch_sessions=args.sessions // args.processes,
        routing_domain="nhs.mail.onmicrosoft.com",
    )
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
        source_endpoint=source,
    )
    Mailbox.objects.update(wave=wave, state=Mailbox.State.SCHEDULED)  # stamped, as approval does
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    app.control.purge()

    try:
        exchange = FakeExchange(exchange_dir)
        exchange.add_mailboxes(Mailbox.objects.values_list("email", flat=True).iterator())
        log(
            f"{Mailbox.objects.count():,} mailboxes in {Organisation.objects.count()} organisations, one wave"
        )
        logs = args.log_dir or tmp
        worker = WorkerProcess("bench", Path(logs), env=env, pool="prefork", concurrency=args.processes)
        try:
            worker.wait_ready()
            log(
                f"one worker, {args.processes} processes x {args.sessions // args.processes} sessions; the tick"
            )
            load_before = os.getloadavg()
            started = time.perf_counter()
            app.send_task("migrations_app.tasks.wave_tick")
            deadline = started + args.timeout
            last_report = 0.0
            while time.perf_counter() < deadline:
                status = Wave.objects.filter(pk=wave.pk).values_list("status", flat=True).get()
                if status == Wave.Status.COMPLETED:
                    break
                time.sleep(0.5)
                if time.perf_counter() - last_report > 15:
                    last_report = time.perf_counter()
                    done = Mailbox.objects.filter(wave=wave, state="migrated").count()
                    log(
                        f"{last_report - started:6.1f} s {status}: {done:,} migrated, load {os.getloadavg()[0]:.1f}"
                    )
            else:
                raise SystemExit(f"the wave did not complete within {args.timeout} s")
            seconds = time.perf_counter() - started
            load_after = os.getloadavg()
        finally:
            worker.stop()
        calls = _set_mailbox_calls(exchange)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = Mailbox.objects.filter(wave=wave).values_list("state", "switch_status").annotate(n=Count("id"))
    states = {(state, switch): n for state, switch, n in rows}
    if states != {(Mailbox.State.MIGRATED, Mailbox.SwitchStatus.SWITCHED): args.mailboxes}:
        raise SystemExit(f"not every mailbox migrated and switched: {states}")
    if len(calls) != args.mailboxes or set(calls.values()) != {1}:
        twice = sum(1 for n in calls.values() if n > 1)
        raise SystemExit(f"Set-Mailbox ran for {len(calls):,} mailboxes, {twice} of them more than once")
    events = Event.objects.filter(wave_id=wave.pk, action="mailbox.switched").count()
    log(f"checked: {args.mailboxes:,} migrated and switched, Set-Mailbox once each, {events:,} switch events")
    print(
        json.dumps(
            {
                "bench": "switch",
                "switches": args.mailboxes,
                "seconds": round(seconds, 1),
                "switches_per_s": round(args.mailboxes / seconds, 1),
                "sessions": args.sessions,
                "cmdlet_seconds": args.cmdlet_seconds,
                "floor_seconds": round(args.mailboxes * args.cmdlet_seconds / args.sessions, 1),
                "load": [round(x, 2) for x in (*load_before, *load_after)],
            }
        )
    )


def _set_mailbox_calls(exchange) -> dict[str, int]:
    """Set-Mailbox calls per mailbox, from the fake's call log."""
    calls: dict[str, int] = {}
    for call in exchange.calls("Set-Mailbox"):
        calls[call["identity"]] = calls.get(call["identity"], 0) + 1
    return calls


if __name__ == "__main__":
    main()
