"""How fast does a national inventory import, next to a plain COPY of the same file?

    createdb -h 127.0.0.1 -U postgres portal_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench .venv/bin/python -m bench.import_inventory

Point DATABASE_URL at a scratch database: its schema is dropped and migrated afresh, so the name must contain
"bench". The run generates a synthetic national file (N mailboxes over ~N/100 organisations with ODS-like
codes; sizes lognormal with a median near 1 GB and a tail past 50 GB), imports it with inventory_import
(organisation=None, as the programme office would), then COPYs the same file into an empty table with the
mailbox table's columns, constraints and indexes (no validation) as the baseline. Prints one JSON line:

    {"bench": "import", "rows": N, "seconds": S, "rows_per_s": R, "copy_baseline_s": B, "ratio": S/B}
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench._scratch import log, reset_schema, scratch_database_url

FIRST = [
    "amelia",
    "oliver",
    "isla",
    "george",
    "ava",
    "harry",
    "mia",
    "noah",
    "ivy",
    "leo",
    "grace",
    "jack",
    "freya",
    "oscar",
    "lily",
    "arthur",
    "sophie",
]
LAST = [
    "smith",
    "jones",
    "taylor",
    "brown",
    "williams",
    "wilson",
    "johnson",
    "davies",
    "patel",
    "wright",
    "khan",
    "evans",
    "thomas",
    "roberts",
]
DEPARTMENTS = [
    "reception",
    "pharmacy",
    "theatres",
    "radiology",
    "outpatients",
    "estates",
    "finance",
    "hr",
    "admissions",
    "wards",
]
COLUMNS = [
    "email",
    "display_name",
    "kind",
    "size_bytes",
    "item_count",
    "affinity_group",
    "target_upn",
    "ods_code",
]


def ods_codes(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(code, kind) pairs shaped like real ODS codes: trusts RJ1, sites RJ102, practices A81001, pharmacies FA123."""
    alnum = "ABCDEFGHJKLMNPQRTVWXY0123456789"
    codes: dict[str, str] = {}
    trusts = max(1, count // 100)
    while len(codes) < trusts:
        codes.setdefault("R" + rng.choice(alnum) + rng.choice(alnum), "trust")
    trust_codes = list(codes)
    while len(codes) < count:
        roll = rng.random()
        if roll < 0.15:
            codes.setdefault(rng.choice(trust_codes) + f"{rng.randrange(100):02d}", "trust_site")
        elif roll < 0.8:
            codes.setdefault(rng.choice("ABCDEFGHJKLMNPY") + f"{rng.randrange(100000):05d}", "gp_practice")
        else:
            codes.setdefault("F" + "".join(rng.choice(alnum) for _ in range(4)), "pharmacy")
    return list(codes.items())


def generate(path: Path, rows: int, organisations: list[tuple[str, str]], rng: random.Random) -> None:
    # Trusts are big, practices and pharmacies small: weight the organisations accordingly.
    weights = [
        {"trust": 60.0, "trust_site": 8.0}.get(kind, 1.0) * rng.paretovariate(2.0)
        for _, kind in organisations
    ]
    picks = rng.choices(range(len(organisations)), weights=weights, k=rows)
    picks.sort()  # a national export lists each organisation's mailboxes together
    mu, sigma = math.log(1_000_000_000), 1.25  # median 1 GB; the 99.9th percentile is past 50 GB
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        batch = []
        for n, index in enumerate(picks):
            code = organisations[index][0]
            roll = rng.random()
            if roll < 0.9:
                first, last = rng.choice(FIRST), rng.choice(LAST)
                local, name, kind = f"{first}.{last}{n}", f"{first.title()} {last.title()}", "user"
            elif roll < 0.97:
                dept = rng.choice(DEPARTMENTS)
                local, name, kind = f"{dept}.{code.lower()}{n}", f"{dept.title()} ({code})", "shared"
            elif roll < 0.99:
                local, name, kind = f"room.{code.lower()}{n}", f"Meeting room {n}", "room"
            else:
                local, name, kind = f"kit.{code.lower()}{n}", f"Equipment {n}", "equipment"
            size = min(int(rng.lognormvariate(mu, sigma)), 200 * 10**9)
            group = f"grp-{code.lower()}-{n % 7}" if rng.random() < 0.03 else ""
            target = f"{local}@{code.lower()}.onmicrosoft.com" if rng.random() < 0.3 else ""
            batch.append((f"{local}@nhs.net", name, kind, size, size // 40_000, group, target, code))
            if len(batch) >= 10_000:
                writer.writerows(batch)
                batch.clear()
        writer.writerows(batch)


def checkpoint() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def copy_baseline(path: Path) -> float:
    """A plain client-side COPY of the same file into an empty table shaped like the mailbox table."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_baseline")
        cursor.execute("CREATE TABLE bench_copy_baseline (LIKE migrations_app_mailbox INCLUDING ALL)")
        cursor.execute("ALTER TABLE bench_copy_baseline ADD COLUMN ods_code text")
        cursor.execute("ALTER TABLE bench_copy_baseline ALTER COLUMN organisation_id DROP NOT NULL")
    checkpoint()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor, path.open("rb") as source:
        text = "display_name, affinity_group, target_upn"
        sql = f"COPY bench_copy_baseline ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv, HEADER, FORCE_NOT_NULL ({text}))"
        with cursor.cursor.copy(sql) as copy:
            while block := source.read(1 << 20):
                copy.write(block)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_copy_baseline")
        copied = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_copy_baseline")
    log(f"baseline COPY: {copied} rows in {seconds:.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_100_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--keep-file", action="store_true", help="print the generated file's path and keep it"
    )
    args = parser.parse_args()

    scratch_database_url("portal_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")  # development defaults for the secrets; the database is DATABASE_URL
    import django

    django.setup()

    from migrations_app.models import Mailbox, Organisation
    from migrations_app.services.imports import inventory_import

    reset_schema()

    rng = random.Random(args.seed)
    organisations = ods_codes(max(1, args.rows // 100), rng)
    Organisation.objects.bulk_create(
        [
            Organisation(
                ods_code=code, name=f"Organisation {code}", kind=kind, region=Organisation.Region.LONDON
            )
            for code, kind in organisations
        ],
        batch_size=5_000,
    )
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        path = Path(tmp) / "national.csv"
        started = time.perf_counter()
        generate(path, args.rows, organisations, rng)
        size = path.stat().st_size
        log(
            f"generated {args.rows} rows over {len(organisations)} organisations, {size / 1e6:.0f} MB, "
            f"in {time.perf_counter() - started:.1f} s"
        )

        checkpoint()
        started = time.perf_counter()
        with path.open("rb") as source:
            result = inventory_import(source=source, organisation=None, actor=None, total_bytes=size)
        seconds = time.perf_counter() - started
        log(
            f"import: {result.status}, created {result.created}, errors {result.error_count}, {seconds:.1f} s"
        )
        if result.status != "succeeded" or result.created != args.rows:
            log(f"unexpected result: {result.errors[:5]}")
            sys.exit(1)
        assert Mailbox.objects.count() == args.rows

        baseline = copy_baseline(path)
        if args.keep_file:
            kept = Path(tempfile.gettempdir()) / "bench-national.csv"
            path.replace(kept)
            log(f"kept {kept}")

    print(
        json.dumps(
            {
                "bench": "import",
                "rows": args.rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(args.rows / seconds),
                "copy_baseline_s": round(baseline, 2),
                "ratio": round(seconds / baseline, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
