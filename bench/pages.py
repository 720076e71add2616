"""How fast are the status pages at national scale?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_pages_bench \\
        .venv/bin/python -m bench.pages --mailboxes 2100000 --orgs 22000

Point DATABASE_URL at a scratch database whose name contains "bench": its schema is dropped and migrated
afresh. The programme is generated inside PostgreSQL by bench.plan.generate (set-based), with the counters'
insert trigger off and the counters rebuilt in one GROUP BY afterwards, as the national load does. Then, set-based
again: fourteen completed nightly waves of ~22,000 mailboxes each (mostly migrated, ~1% failed with error codes,
~1.5% needed attention), a pilot wave, one running wave with mailboxes in every state (the live page's work),
one approved wave, and the planner's draft waves for what is left.

Timed, with django.test.Client and a signed-in user (server time: URL routing, middleware, the view, its
queries and the template), `--requests` times each after a warm-up:
- the dashboard, as a programme officer;
- the running wave's page, as a programme officer;
- mailbox search, as a programme officer, by address and by display-name prefix (a query per request, varied);
- the largest trust's organisation page, as its trust admin.

Prints one JSON line:

    {"bench": "pages", "dashboard_p95_ms": D, "wave_p95_ms": W, "search_p95_ms": S, "org_p95_ms": O}
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time

from bench._scratch import log, reset_schema, scratch_database_url

MAILBOX = "migrations_app_mailbox"
WAVE = "migrations_app_wave"


def make_wave(cursor, *, name, kind, starts_at, status, is_pilot=False, hours=12) -> int:
    cursor.execute(
        f"""INSERT INTO {WAVE} (name, kind, is_pilot, starts_at, ends_at, capacity_mailboxes, capacity_bytes, status,
                paused_from, planned_mailboxes, planned_bytes, created_at, updated_at)
            VALUES (%s, %s, %s, %s, %s, 22000, 35184372088832, %s, '', 0, 0, now(), now()) RETURNING id""",
        [name, kind, is_pilot, starts_at, starts_at + dt.timedelta(hours=hours), status],
    )
    return cursor.fetchone()[0]


def stamp(cursor, wave_id: int, *, first_org: int, last_org: int, state_sql: str, limit: int = 22_000) -> int:
    """Put up to `limit` ready mailboxes of organisations first_org..last_org into the wave, in the states
    state_sql gives (an SQL expression over the row's id); failed ones get an error code."""
    cursor.execute(
        f"""
        UPDATE {MAILBOX} m SET wave_id = %s, state = s.state,
               last_error_code = CASE WHEN s.state = 'failed'
                   THEN (ARRAY['AUTH_FAILED','TARGET_MISSING','OVER_QUOTA','THROTTLED'])[1 + m.id %% 4] ELSE '' END,
               last_error_message = CASE WHEN s.state = 'failed' THEN 'simulated failure' ELSE '' END,
               needed_attention = (s.state = 'failed' OR m.id %% 200 = 7),
               bytes_copied = CASE WHEN s.state = 'migrated' THEN m.size_bytes ELSE 0 END
        FROM (SELECT id, {state_sql.replace("%", "%%")} AS state FROM {MAILBOX}
              WHERE organisation_id BETWEEN %s AND %s AND state = 'ready' AND wave_id IS NULL
              ORDER BY id LIMIT %s) s
        WHERE m.id = s.id
        """,
        [wave_id, first_org, last_org, limit],
    )
    return cursor.rowcount


def build(args) -> None:
    from django.db import connection, transaction

    from bench.plan import generate
    from migrations_app.services.counters import (
        counters_disable_insert_trigger,
        counters_enable_insert_trigger,
        counters_rebuild,
    )

    reset_schema()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        counters_disable_insert_trigger()
        generate(cursor, mailboxes=args.mailboxes, orgs=args.orgs, seed=args.seed)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no ALTER TABLE while foreign-key checks are pending
        counters_enable_insert_trigger()
        log("counters: one GROUP BY over the mailboxes")
        counters_rebuild()
    log(f"generated in {time.perf_counter() - started:.1f} s; waves ...")
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM migrations_app_organisation")
        low, high = cursor.fetchone()
        span = max(1, (high - low) // 40)
        org = low
        pilot = make_wave(
            cursor,
            name="Pilot",
            kind="evening",
            starts_at=now - dt.timedelta(days=20),
            status="completed",
            is_pilot=True,
        )
        stamp(cursor, pilot, first_org=high - 500, last_org=high, state_sql="'migrated'", limit=500)
        for night in range(14, 0, -1):
            wave = make_wave(
                cursor,
                name=f"Evening -{night}",
                kind="evening",
                starts_at=now - dt.timedelta(days=night),
                status="completed",
            )
            done = "CASE WHEN id % 100 = 0 THEN 'failed' ELSE 'migrated' END"
            n = stamp(cursor, wave, first_org=org, last_org=org + span, state_sql=done)
            log(f"  completed wave -{night}: {n:,} mailboxes")
            org += span + 1
        running = make_wave(
            cursor,
            name="Evening tonight",
            kind="evening",
            starts_at=now - dt.timedelta(hours=3),
            status="running",
        )
        mixed = """CASE WHEN id % 20 < 9 THEN 'migrated' WHEN id % 20 < 12 THEN 'synced'
                        WHEN id % 20 = 12 THEN 'syncing' WHEN id % 20 = 13 THEN 'cutover'
                        WHEN id % 20 = 14 THEN 'verifying' WHEN id % 20 = 15 THEN 'failed' ELSE 'scheduled' END"""
        n = stamp(cursor, running, first_org=org, last_org=org + span, state_sql=mixed)
        log(f"  running wave: {n:,} mailboxes")
        org += span + 1
        approved = make_wave(
            cursor,
            name="Evening tomorrow",
            kind="evening",
            starts_at=now + dt.timedelta(days=1),
            status="approved",
        )
        stamp(cursor, approved, first_org=org, last_org=org + span, state_sql="'scheduled'")
        # the organisations whose mailboxes all moved are migrated
        cursor.execute(
            """UPDATE migrations_app_organisation o SET status = 'migrating'
               WHERE EXISTS (SELECT 1 FROM migrations_app_mailboxcounter k
                             WHERE k.organisation_id = o.id AND k.wave_id <> 0 AND k.mailboxes > 0)"""
        )
    log(f"waves stamped in {time.perf_counter() - started:.1f} s; planning the rest ...")
    from migrations_app.models import User
    from migrations_app.services.plans import plan_commit

    officer, _ = User.objects.get_or_create(username="bench-officer", defaults={"role": "programme_office"})
    plan, waves = plan_commit(start=(now + dt.timedelta(days=3)).date(), actor=officer)
    log(f"  {len(waves)} draft waves for {plan.mailboxes:,} mailboxes; vacuum analyze ...")
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=20, method="inclusive")[18] * 1000, 1)


def timed(client, urls: list[str], *, requests: int, warmup: int = 3) -> list[float]:
    for url in urls[:warmup]:
        assert client.get(url).status_code == 200, url
    samples = []
    for n in range(requests):
        url = urls[n % len(urls)]
        started = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mailboxes", type=int, default=2_100_000)
    parser.add_argument("--orgs", type=int, default=22_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--keep-data", action="store_true", help="reuse the data of the previous run")
    args = parser.parse_args()

    scratch_database_url("portal_pages_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.conf import settings

    # measure the production code path: no query log, no debug toolbar of any kind
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]
    from django.db.models import Sum
    from django.test import Client

    from migrations_app.models import Mailbox, MailboxCounter, Organisation, User, Wave

    if not args.keep_data:
        build(args)

    officer, _ = User.objects.get_or_create(username="bench-officer", defaults={"role": "programme_office"})
    wave = Wave.objects.get(status=Wave.Status.RUNNING)
    # the largest trust, administered by its trust admin
    org_id = (
        MailboxCounter.objects.filter(
            organisation_id__in=Organisation.objects.filter(kind="trust").values("pk")
        )
        .values("organisation_id")
        .annotate(n=Sum("mailboxes"))
        .order_by("-n")
        .values_list("organisation_id", flat=True)
        .first()
    )
    organisation = Organisation.objects.get(pk=org_id)
    admin, _ = User.objects.get_or_create(username="bench-trust-admin", defaults={"role": "trust_admin"})
    admin.organisations.set([organisation])

    office = Client()
    office.force_login(officer)
    trust = Client()
    trust.force_login(admin)

    sample = list(
        Mailbox.objects.filter(pk__in=[1 + i * (args.mailboxes // 40) for i in range(40)]).values_list(
            "email", "display_name"
        )
    )
    searches = []
    for email, name in sample:
        searches.append(f"/mailboxes/?q={email[: max(3, len(email) // 2)]}")
        searches.append(f"/mailboxes/?q={name[:10].replace(' ', '+')}")
    results = {}
    log("timing ...")
    results["dashboard"] = timed(office, ["/dashboard/"], requests=args.requests)
    results["wave"] = timed(office, [f"/waves/{wave.pk}/"], requests=args.requests)
    results["search"] = timed(office, searches, requests=args.requests)
    results["org"] = timed(trust, [f"/organisations/{organisation.ods_code}/"], requests=args.requests)
    log(f"load average while timing: {os.getloadavg()[0]:.2f} (this machine has {os.cpu_count()} cores)")
    for name, samples in results.items():
        log(f"  {name}: median {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms")
    log(
        f"{Mailbox.objects.count():,} mailboxes, {Organisation.objects.count():,} organisations, "
        f"{MailboxCounter.objects.count():,} counter rows, {Wave.objects.count()} waves; running wave "
        f"{wave.name}; organisation page {organisation.ods_code}"
    )
    print(json.dumps({"bench": "pages", **{f"{name}_p95_ms": p95(s) for name, s in results.items()}}))


if __name__ == "__main__":
    main()
