"""How long does planning the whole programme take, saving the plan included?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_plan_bench \\
        .venv/bin/python -m bench.plan --mailboxes 2100000 --orgs 22000

Point DATABASE_URL at a scratch database whose name contains "bench": its schema is dropped and migrated
afresh. The data is generated inside PostgreSQL, set-based (generate_series, one INSERT ... SELECT per
table), never row by row in Python:
- organisations: 1% trusts (1,000 to 20,000 mailboxes each, so many are spread over several waves), the rest
  practices, sites and pharmacies (5 to 300), priorities, 10% preferring evenings and 10% weekends;
- mailboxes: sizes lognormal with a median near 0.9 GB (mean 1.2 GB) and a tail to 100 GB; 95% ready; about 8% in affinity
  groups of ~30 inside their organisation, and groups linking ten practices at a time across organisations;
- 5% of organisations with a blackout of one to three weeks; England's bank holidays and a Christmas freeze.

Timed: services.plans.plan_commit, which reads the aggregates, plans, and saves the draft waves and their
allocations. Prints one JSON line:

    {"bench": "plan", "mailboxes": N, "orgs": M, "waves": W, "seconds": S}
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time

from bench._scratch import log, reset_schema, scratch_database_url

BANK_HOLIDAYS = [
    "2026-12-25", "2026-12-28", "2027-01-01", "2027-03-26", "2027-03-29", "2027-05-03", "2027-05-31",
    "2027-08-30", "2027-12-27", "2027-12-28",
]  # fmt: skip


def generate(cursor, *, mailboxes: int, orgs: int, seed: float) -> None:
    cursor.execute("SELECT setseed(%s)", [seed])
    log(f"organisations: {orgs:,}")
    cursor.execute(
        """
        INSERT INTO migrations_app_organisation
            (ods_code, name, kind, region, status, preferred_window, priority, gate_mfa_enforced,
             gate_acceptable_use, gate_licences_assigned, gate_service_desk_briefed, notes, stage, created_at, updated_at)
        SELECT CASE WHEN i <= %(trusts)s THEN 'R' || lpad(i::text, 4, '0') ELSE 'P' || lpad(i::text, 6, '0') END,
               'Organisation ' || i,
               CASE WHEN i <= %(trusts)s THEN 'trust' WHEN i %% 5 = 0 THEN 'pharmacy' ELSE 'gp_practice' END,
               (ARRAY['london','south_east','south_west','east_of_england','midlands','north_east_yorkshire',
                      'north_west'])[1 + i %% 7],
               'ready',
               CASE WHEN random() < 0.1 THEN 'evening' WHEN random() < 0.11 THEN 'weekend' ELSE 'any' END,
               (10 * (1 + floor(random() * 10)))::int,
               true, true, true, true, '', 'readiness', now(), now()
        FROM generate_series(1, %(orgs)s) AS i
        """,
        {"orgs": orgs, "trusts": max(1, orgs // 100)},
    )
    log(f"mailboxes: {mailboxes:,}")
    # Each organisation's share: trusts weigh 1,000-20,000, others 5-300; scaled to exactly N in total.
    cursor.execute(
        """
        CREATE TEMP TABLE bench_share AS
        WITH w AS (
            SELECT id, ods_code, kind,
                   CASE WHEN kind = 'trust' THEN 1000 + floor(random() * random() * 19000)
                        ELSE 5 + floor(random() * random() * 300) END AS weight
            FROM migrations_app_organisation
        ), s AS (SELECT sum(weight) AS total FROM w),
        f AS (SELECT w.*, floor(%(n)s * weight / s.total)::int AS base, row_number() OVER (ORDER BY id) AS rn
              FROM w, s)
        SELECT id, ods_code, kind,
               base + CASE WHEN rn <= %(n)s - (SELECT sum(base) FROM f) THEN 1 ELSE 0 END AS n
        FROM f
        """,
        {"n": mailboxes},
    )
    cursor.execute(
        """
        INSERT INTO migrations_app_mailbox
            (organisation_id, email, display_name, kind, size_bytes, item_count, affinity_group, state)
        SELECT o.id,
               'm' || k || '@' || lower(o.ods_code) || '.nhs.uk',
               'Mailbox ' || k,
               CASE WHEN k % 50 = 7 THEN 'shared' WHEN k % 97 = 3 THEN 'room' ELSE 'user' END,
               sz, sz / 75000,
               CASE WHEN k % 50 < 4 THEN 'G-' || o.ods_code || '-' || (k / 400)
                    WHEN k = 1 AND o.kind <> 'trust' AND o.id % 3 = 0 THEN 'ICB-' || (o.id / 30)
                    ELSE '' END,
               CASE WHEN random() < 0.95 THEN 'ready' WHEN random() < 0.5 THEN 'blocked' ELSE 'inventoried' END
        FROM bench_share o
        CROSS JOIN LATERAL generate_series(1, o.n) AS k
        -- "k * 0" correlates the subquery with the row: without it PostgreSQL draws one size for all rows
        CROSS JOIN LATERAL (
            SELECT least(100e9, exp(ln(0.9e9) + 0.75 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
                                    + k * 0))::bigint AS sz
        ) size
        ORDER BY o.id, k
        """
    )
    log("blackouts, bank holidays, freeze")
    cursor.execute(
        """
        INSERT INTO migrations_app_blackoutperiod (organisation_id, starts_on, ends_on, reason)
        SELECT id, d, d + (7 * (1 + floor(random() * 3)))::int - 1, 'Local go-live'
        FROM (SELECT id, current_date + (floor(random() * 180))::int AS d
              FROM migrations_app_organisation WHERE random() < 0.05) b
        """
    )
    cursor.executemany(
        "INSERT INTO migrations_app_closedperiod (kind, starts_on, ends_on, name) VALUES ('bank_holiday', %s, %s, 'Bank holiday')",
        [(d, d) for d in BANK_HOLIDAYS],
    )
    cursor.execute(
        "INSERT INTO migrations_app_closedperiod (kind, starts_on, ends_on, name) "
        "VALUES ('freeze', '2026-12-19', '2027-01-04', 'Christmas change freeze')"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mailboxes", type=int, default=2_100_000)
    parser.add_argument("--orgs", type=int, default=22_000)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2027, 1, 11))
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--keep-data", action="store_true", help="reuse the data of the previous run")
    args = parser.parse_args()

    scratch_database_url("portal_plan_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.db import connection

    from migrations_app.models import Allocation, Mailbox, Organisation, User, Wave

    if not args.keep_data:
        reset_schema()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            generate(cursor, mailboxes=args.mailboxes, orgs=args.orgs, seed=args.seed)
        log(f"generated in {time.perf_counter() - started:.1f} s; vacuum analyze ...")
        connection.ensure_connection()
        with connection.cursor() as cursor:  # autocommit outside atomic(): VACUUM may run
            cursor.execute("VACUUM ANALYZE")
    else:
        Allocation.objects.all().delete()
        Wave.objects.all().delete()

    officer, _ = User.objects.get_or_create(username="bench-officer", defaults={"role": "programme_office"})
    from migrations_app.services.plans import plan_commit

    started = time.perf_counter()
    plan, waves = plan_commit(start=args.start, actor=officer)
    seconds = time.perf_counter() - started
    log(
        f"planned {plan.mailboxes:,} mailboxes in {len(waves)} waves to {plan.finish:%Y-%m-%d}; "
        f"{plan.unplaced_mailboxes:,} not placed ({len(plan.unplaced)} units); "
        f"{Allocation.objects.count():,} allocations"
    )
    reasons: dict[str, int] = {}
    for item in plan.unplaced:
        reasons[item.reason] = reasons.get(item.reason, 0) + item.mailboxes
    if reasons:
        log(f"not placed, by reason: {reasons}")
    print(
        json.dumps(
            {
                "bench": "plan",
                "mailboxes": Mailbox.objects.count(),
                "orgs": Organisation.objects.count(),
                "waves": len(waves),
                "seconds": round(seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
