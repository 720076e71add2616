"""How fast are the pages at national scale, over real HTTP, with a year of audit events?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_pages_bench \\
        .venv/bin/python -m bench.pages --mailboxes 2100000 --orgs 22000 --events 20000000

Point DATABASE_URL at a scratch database whose name contains "bench": its schema is dropped and migrated
afresh (`--keep-data` reuses the previous run's). The programme is generated inside PostgreSQL by
bench.plan.generate (set-based), with the counters' insert trigger off and the counters rebuilt in one GROUP BY
afterwards, as the national load does. Then, set-based again: fourteen completed nightly waves of ~22,000
mailboxes each (mostly migrated, ~1% failed with error codes, ~1.5% needed attention), a pilot wave, one
running wave with mailboxes in every state (the live page's work), one approved wave, the planner's draft
waves for what is left, and `--events` audit events spread over the last year (about a year of a national
programme: claims, transitions, imports, decisions), 50 of them on one mailbox's timeline.

Served by gunicorn with the production profile (DEBUG off, static files collected, every middleware), and
timed from a keep-alive HTTP client on loopback with signed-in session cookies, `--requests` times each after
a warm-up: the dashboard, the running wave, the largest trust's organisation page (as its trust admin), the
organisations list (22,000, as the programme office), mailbox search (a query per request, varied), a mailbox
with a 50-event timeline, the audit log (first page; filtered by organisation; a page 10,000 events deep),
the event feed (a page from the middle of the history, and its tail), failures, and the public lookup (anonymous, a POST with its CSRF token).

Prints one JSON line:

    {"bench": "pages", "dashboard_p95_ms": D, "wave_p95_ms": W, "search_p95_ms": S, "org_p95_ms": O,
     "org_list_p95_ms": .., "timeline_p95_ms": .., "audit_p95_ms": .., "audit_filtered_p95_ms": ..,
     "audit_deep_p95_ms": .., "feed_p95_ms": .., "feed_tail_p95_ms": .., "failures_p95_ms": ..,
     "lookup_p95_ms": .., "events": N, "event_partitions": P, "load": L}
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
    log(f"waves stamped in {time.perf_counter() - started:.1f} s; {args.events:,} events ...")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id) FROM {MAILBOX} WHERE wave_id = %s", [running])
        make_events(
            cursor, events=args.events, mailboxes=args.mailboxes, timeline_mailbox=cursor.fetchone()[0]
        )
    log("planning the rest ...")
    from migrations_app.models import User
    from migrations_app.services.plans import plan_commit

    officer, _ = User.objects.get_or_create(username="bench-officer", defaults={"role": "programme_office"})
    plan, waves = plan_commit(start=(now + dt.timedelta(days=3)).date(), actor=officer)
    log(f"  {len(waves)} draft waves for {plan.mailboxes:,} mailboxes; vacuum analyze ...")
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


EVENT = "migrations_app_event"
# (action, from_state, to_state): the shapes a year of a programme writes most
EVENT_KINDS = [
    ("mailbox.claimed", "scheduled", "syncing"),
    ("mailbox.synced", "syncing", "synced"),
    ("mailbox.claimed", "synced", "cutover"),
    ("mailbox.verifying", "cutover", "verifying"),
    ("mailbox.migrated", "verifying", "migrated"),
    ("mailbox.failed", "syncing", "failed"),
    ("mailbox.retried", "failed", "scheduled"),
    ("readiness.checked", "inventoried", "ready"),
]


def make_events(cursor, *, events: int, mailboxes: int, timeline_mailbox: int) -> None:
    """`events` events over the last year, oldest first (ids in time order, as the portal writes them), each
    about a mailbox (its organisation and wave too); the event table's secondary indexes are dropped and
    built again afterwards, as the national load does for the mailbox table."""
    cursor.execute(
        f"""SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
            WHERE i.indrelid = '{EVENT}'::regclass AND NOT i.indisprimary
              AND i.indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE conrelid = '{EVENT}'::regclass)"""
    )
    # on the partitioned table (PostgreSQL, ADR 029) the definitions read "ON ONLY": built afterwards on the
    # whole table, partitions included
    indexes = [(name, definition.replace(" ON ONLY ", " ON ", 1)) for name, definition in cursor.fetchall()]
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    # a month partition for each month of the year the events span (beat makes only the coming ones)
    from migrations_app.services.event_partitions import event_partitions_ensure

    event_partitions_ensure(since=(dt.datetime.now(dt.UTC) - dt.timedelta(days=366)).date())
    actions = "ARRAY[" + ",".join(f"'{a}'" for a, _, _ in EVENT_KINDS) + "]"
    froms = "ARRAY[" + ",".join(f"'{f}'" for _, f, _ in EVENT_KINDS) + "]"
    tos = "ARRAY[" + ",".join(f"'{t}'" for _, _, t in EVENT_KINDS) + "]"
    kinds = len(EVENT_KINDS)
    started = time.perf_counter()
    # txids as the portal writes them: many transactions, each a few events, every one finished (below the
    # current transaction id, hence the feed's horizon), rising with time
    cursor.execute("SELECT pg_current_xact_id()::text::bigint")
    current_txid = cursor.fetchone()[0]
    step = 2_000_000
    for first in range(1, events + 1, step):
        last = min(events, first + step - 1)
        cursor.execute(
            f"""
            INSERT INTO {EVENT} (created_at, action, actor_id, organisation_id, mailbox_id, wave_id, subject,
                                 from_state, to_state, message, data, txid)
            SELECT now() - ({events} - g.i) * (interval '365 days' / {events}),
                   ({actions})[1 + g.i % {kinds}], NULL, m.organisation_id, m.id, m.wave_id, m.email,
                   ({froms})[1 + g.i % {kinds}], ({tos})[1 + g.i % {kinds}], '', '{{}}'::jsonb,
                   1 + ((g.i - 1)::bigint * ({current_txid} - 2)) / {events}
            FROM generate_series({first}, {last}) AS g(i)
            JOIN {MAILBOX} m ON m.id = 1 + (g.i::bigint * 7919) % {mailboxes}
            ORDER BY g.i
            """
        )
        log(f"  events: {last:,} of {events:,} ({time.perf_counter() - started:.0f} s)")
    cursor.execute(
        f"""
        INSERT INTO {EVENT} (created_at, action, actor_id, organisation_id, mailbox_id, wave_id, subject,
                             from_state, to_state, message, data)
        SELECT now() - (50 - g.i) * interval '1 hour', ({actions})[1 + g.i %% {kinds}], NULL,
               m.organisation_id, m.id, m.wave_id, m.email,
               ({froms})[1 + g.i %% {kinds}], ({tos})[1 + g.i %% {kinds}], 'on its timeline', '{{}}'::jsonb
        FROM generate_series(1, 50) AS g(i) JOIN {MAILBOX} m ON m.id = %s ORDER BY g.i
        """,
        [timeline_mailbox],
    )
    cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
    for _name, definition in indexes:
        cursor.execute(definition)
    log(f"  {len(indexes)} event indexes built; {time.perf_counter() - started:.0f} s in all")


def p95(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=20, method="inclusive")[18] * 1000, 1)


def timed(client, urls: list[str], *, requests: int, warmup: int = 3, post=None) -> list[float]:
    """GET each url in turn (or post(url) -> (status, seconds)), `requests` times after a warm-up."""
    fetch = post or (lambda url: client.get(url)[:2])
    for url in urls[:warmup]:
        status, _ = fetch(url)
        assert status == 200, (url, status)
    samples = []
    for n in range(requests):
        url = urls[n % len(urls)]
        status, seconds = fetch(url)
        samples.append(seconds)
        assert status == 200, (url, status)
    return samples


def lookup_poster(client):
    """The public lookup is a POST with the form's CSRF token: fetch the form once (with the CSRF cookie,
    so the token belongs to it), then post addresses."""
    import re

    status, _, body = client.get("/when-does-my-mailbox-move/")
    assert status == 200, status
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    import http.client
    from urllib.parse import urlencode

    def post(email: str) -> tuple[int, float]:
        body = urlencode({"csrfmiddlewaretoken": token, "email": email})
        headers = {
            "Host": "127.0.0.1",
            "Cookie": client.cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{client.port}/when-does-my-mailbox-move/",
        }
        started = time.perf_counter()
        try:
            client.connection.request("POST", "/when-does-my-mailbox-move/", body=body, headers=headers)
            response = client.connection.getresponse()
            response.read()
        except (http.client.HTTPException, OSError):
            client.connection.close()
            client.connection = http.client.HTTPConnection("127.0.0.1", client.port, timeout=60)
            client.connection.request("POST", "/when-does-my-mailbox-move/", body=body, headers=headers)
            response = client.connection.getresponse()
            response.read()
        return response.status, time.perf_counter() - started

    return post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mailboxes", type=int, default=2_100_000)
    parser.add_argument("--orgs", type=int, default=22_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--keep-data", action="store_true", help="reuse the data of the previous run")
    args = parser.parse_args()

    scratch_database_url("portal_pages_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.db.models import Sum

    from bench._http import Client, gunicorn, production_env, session_cookie
    from migrations_app.models import Event, Mailbox, MailboxCounter, Organisation, User, Wave
    from migrations_app.services.event_partitions import event_partitions_status

    if not args.keep_data:
        build(args)
    else:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)  # data from an earlier schema

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
    timeline = Mailbox.objects.filter(wave=wave).order_by("id").first()
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first()
    events = Event.objects.count() if args.keep_data else args.events + 50

    sample = list(
        Mailbox.objects.filter(pk__in=[1 + i * (args.mailboxes // 40) for i in range(40)]).values_list(
            "email", "display_name"
        )
    )
    searches, addresses = [], []
    for email, name in sample:
        searches.append(f"/mailboxes/?q={email[: max(3, len(email) // 2)]}")
        searches.append(f"/mailboxes/?q={name[:10].replace(' ', '+')}")
        addresses.append(email)
    addresses += [f"nobody{n}@nowhere.nhs.uk" for n in range(10)]

    results = {}
    env = production_env()
    with gunicorn(port=args.port, workers=args.workers, threads=1, env=env):
        office = Client(args.port, session_cookie(officer, secret_key=env["SECRET_KEY"]))
        trust = Client(args.port, session_cookie(admin, secret_key=env["SECRET_KEY"]))
        public = Client(args.port)
        public.cookie = _csrf_cookie(public)  # lookup_poster's GET sends it, so its form token matches
        log("timing ...")
        n = args.requests
        results["dashboard"] = timed(office, ["/dashboard/"], requests=n)
        results["wave"] = timed(office, [f"/waves/{wave.pk}/"], requests=n)
        results["search"] = timed(office, searches, requests=n)
        results["org"] = timed(trust, [f"/organisations/{organisation.ods_code}/"], requests=n)
        results["org_list"] = timed(office, ["/organisations/"], requests=n)
        results["timeline"] = timed(office, [f"/mailboxes/{timeline.pk}/"], requests=n)
        results["audit"] = timed(office, ["/audit/"], requests=n)
        results["audit_filtered"] = timed(
            office, [f"/audit/?organisation={organisation.ods_code}"], requests=n
        )
        results["audit_deep"] = timed(office, [f"/audit/?before={newest - 10_000}"], requests=n)
        # the event feed (API, in (txid, id) order below the horizon): a page from mid-history, and the tail
        results["feed"] = timed(office, [f"/api/v1/events/?after={newest // 2}"], requests=n)
        results["feed_tail"] = timed(office, [f"/api/v1/events/?after={newest - 20}"], requests=n)
        results["failures"] = timed(office, ["/failures/"], requests=n)
        results["lookup"] = timed(public, addresses, requests=n, post=lookup_poster(public))
        load = os.getloadavg()[0]
    log(f"load average while timing: {load:.2f} (this machine has {os.cpu_count()} cores)")
    for name, samples in results.items():
        log(f"  {name}: median {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms")
    log(
        f"{Mailbox.objects.count():,} mailboxes, {Organisation.objects.count():,} organisations, "
        f"{events:,} events, {Wave.objects.count()} waves; running wave {wave.name}; organisation page "
        f"{organisation.ods_code}; timeline of mailbox {timeline.pk}"
    )
    print(
        json.dumps(
            {
                "bench": "pages",
                **{f"{name}_p95_ms": p95(s) for name, s in results.items()},
                "events": events,
                "event_partitions": event_partitions_status().get("partitions", 0),
                "load": round(load, 2),
            }
        )
    )


def _csrf_cookie(client) -> str:
    """The csrftoken cookie the form's response set (read from a fresh request's Set-Cookie)."""
    client.connection.request("GET", "/when-does-my-mailbox-move/", headers={"Host": "127.0.0.1"})
    response = client.connection.getresponse()
    response.read()
    for header, value in response.getheaders():
        if header.lower() == "set-cookie" and value.startswith("csrftoken="):
            return value.split(";", 1)[0]
    raise SystemExit("the public page set no CSRF cookie")


if __name__ == "__main__":
    main()
