"""How fast is the REST API on a national-sized database?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_api_bench CACHE_URL=redis://127.0.0.1:6379/4 \\
        .venv/bin/python -m bench.api

Point DATABASE_URL at a scratch database whose name contains "bench". The first run drops and migrates its
schema and generates 2,100,000 mailboxes over 22,000 organisations in PostgreSQL with bench.plan's set-based
generator; later runs reuse that data when it is complete and say so on stderr (--fresh regenerates).

Every request goes through the whole Django stack in this process (django.test.Client: middleware, Bearer
token authentication, throttling, DRF, serializers), timed from the client's side, repeated --requests times:
- list: the programme office's first page of /api/v1/mailboxes/, and the filtered list of the admin of the
  largest trust (/api/v1/mailboxes/?state=ready, scoped to their organisation);
  `list_p95_ms` is the worse of the two p95s;
- deep page: the mailbox page whose cursor sits after the 2,000,000th mailbox;
- bulk: the programme office's 100,000-row CSV upsert to /api/v1/organisations/{ods}/mailboxes/bulk into an
  organisation that already has those rows, half of them changed, end to end: the 202, the import job (run by Celery in eager mode, in this process, as a worker would), polled until it succeeded.

Prints one JSON line:

    {"bench": "api", "list_p95_ms": L, "deep_page_p95_ms": D, "bulk_100k_seconds": B, "load": A}
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import time
from urllib.parse import urlencode

from bench._scratch import log, reset_schema, scratch_database_url

BULK_ODS = "BENCHBULK"
BULK_ROWS = 100_000


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def timed_get(client, url: str, repeats: int) -> tuple[float, dict]:
    samples, body = [], {}
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code} {response.content[:500]!r}")
        body = response.json()
    return p95(samples), body


def cursor_after(position: int) -> str:
    """DRF's cursor for "the page after id <position>" (CursorPagination.encode_cursor's format)."""
    return base64.b64encode(urlencode({"p": str(position)}).encode()).decode()


def bulk_csv(rows: int, changed_marker: int = 0) -> bytes:
    """The bulk organisation's inventory; with a marker, the even rows' sizes carry it (changed rows)."""
    lines = ["email,display_name,kind,size_bytes,item_count,affinity_group"]
    lines += [
        f"bulk{i}@benchbulk.nhs.uk,Bulk mailbox {i},user,"
        f"{1_000_000 + i + (changed_marker * 1000 if changed_marker and i % 2 == 0 else 0)},{1000 + i % 500},"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mailboxes", type=int, default=2_100_000)
    parser.add_argument("--orgs", type=int, default=22_000)
    parser.add_argument("--requests", type=int, default=200, help="repeats of each timed GET")
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--fresh", action="store_true", help="regenerate the data even if it is there")
    args = parser.parse_args()

    scratch_database_url("portal_api_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")  # the bulk job runs here, as a worker would
    os.environ.setdefault("API_THROTTLE_RATE", "1000000/min")  # throttled as usual, never refused
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from bench.plan import generate
    from migrations_app.models import Mailbox, Organisation, User
    from migrations_app.services.tokens import token_create

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if not os.environ.get("CACHE_URL"):
        log(
            "CACHE_URL is not set: throttling uses the file cache; production (and the README figures) use Redis"
        )

    call_command("migrate", verbosity=0, interactive=False)
    national = Mailbox.objects.exclude(organisation__ods_code=BULK_ODS)
    have_orgs = Organisation.objects.exclude(ods_code=BULK_ODS).count()
    if not args.fresh and have_orgs == args.orgs and national.count() == args.mailboxes:
        log(
            f"REUSING the data already in {connection.settings_dict['NAME']}: {args.mailboxes:,} mailboxes, "
            f"{args.orgs:,} organisations (pass --fresh to regenerate)"
        )
    else:
        reset_schema()
        log("generating the data ...")
        started = time.perf_counter()
        with connection.cursor() as cursor:
            generate(cursor, mailboxes=args.mailboxes, orgs=args.orgs, seed=args.seed)
        log(f"generated in {time.perf_counter() - started:.1f} s; vacuum analyze ...")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")

    officer, _ = User.objects.get_or_create(username="bench-officer", defaults={"role": "programme_office"})
    admin, _ = User.objects.get_or_create(username="bench-trust-admin", defaults={"role": "trust_admin"})
    # the trust admin of the largest trust: the most rows behind their filtered list
    largest_trust = (
        Organisation.objects.filter(kind="trust")
        .exclude(ods_code=BULK_ODS)
        .annotate(n=Count("mailboxes"))
        .order_by("-n")
        .first()
    )
    admin.organisations.set([largest_trust])
    bulk_org, _ = Organisation.objects.get_or_create(
        ods_code=BULK_ODS, defaults={"name": "Bench bulk upload", "kind": "trust", "region": "london"}
    )

    def client_for(user) -> Client:
        _, raw = token_create(user=user, name="bench", scopes=["read", "write"], expires_at=None)
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    office, trust_admin = client_for(officer), client_for(admin)
    repeats = args.requests

    first_p95, first = timed_get(office, "/api/v1/mailboxes/", repeats)
    log(f"programme office, first page: p95 {first_p95:.1f} ms ({len(first['results'])} rows)")
    admin_p95, page = timed_get(trust_admin, "/api/v1/mailboxes/?state=ready", repeats)
    log(
        f"trust admin of {largest_trust.ods_code} ({largest_trust.n:,} mailboxes), ?state=ready: "
        f"p95 {admin_p95:.1f} ms ({len(page['results'])} rows)"
    )
    deep_after = national.order_by("id").values_list("id", flat=True)[min(args.mailboxes - 100, 1_999_999)]
    deep_p95, deep = timed_get(office, f"/api/v1/mailboxes/?cursor={cursor_after(deep_after)}", repeats)
    assert deep["results"][0]["id"] > deep_after
    log(f"deep page (after mailbox #2,000,000, id {deep_after}): p95 {deep_p95:.1f} ms")

    def post_bulk(body: bytes) -> dict:
        response = office.post(
            f"/api/v1/organisations/{BULK_ODS}/mailboxes/bulk", body, content_type="text/csv"
        )
        if response.status_code not in (200, 202):
            raise SystemExit(f"bulk upsert: {response.status_code} {response.content[:1000]!r}")
        job = response.json()
        while job["status"] in ("queued", "running"):
            time.sleep(0.05)
            job = office.get(response["Location"]).json()
        if job["status"] != "succeeded":
            raise SystemExit(f"bulk upsert did not succeed: {json.dumps(job)[:1000]}")
        return job

    # An upsert into an organisation that already has its rows: the first run (or one after --fresh)
    # loads them untimed; every timed run then changes half of them (the even rows get a size no run gave
    # them before) and leaves the other half as they are.
    if Mailbox.objects.filter(organisation=bulk_org).count() != BULK_ROWS:
        Mailbox.objects.filter(organisation=bulk_org).delete()
        log(f"loading the {BULK_ROWS:,} rows the timed upsert will find (not timed) ...")
        post_bulk(bulk_csv(BULK_ROWS))
    body = bulk_csv(BULK_ROWS, changed_marker=int(time.time()))
    started = time.perf_counter()
    job = post_bulk(body)
    bulk_seconds = time.perf_counter() - started
    changed = BULK_ROWS // 2
    if (job["rows_created"], job["rows_updated"], job["rows_unchanged"]) != (0, changed, BULK_ROWS - changed):
        raise SystemExit(
            f"expected {changed:,} rows changed and the rest unchanged: {json.dumps(job)[:1000]}"
        )
    log(
        f"bulk upsert of {BULK_ROWS:,} rows ({changed:,} changed) into an organisation that has them: "
        f"job {job['id']} in {bulk_seconds:.2f} s"
    )

    print(
        json.dumps(
            {
                "bench": "api",
                "list_p95_ms": round(max(first_p95, admin_p95), 1),
                "deep_page_p95_ms": round(deep_p95, 1),
                "bulk_100k_seconds": round(bulk_seconds, 2),
                "load": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
