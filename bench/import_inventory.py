"""How fast does an inventory import, next to a plain COPY doing the same index work?

    createdb -h 127.0.0.1 -U postgres portal_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench .venv/bin/python -m bench.import_inventory

Point DATABASE_URL at a scratch database: its schema is dropped and migrated afresh, so the name must contain
"bench". The run generates a synthetic national file (N mailboxes over ~N/100 organisations with ODS-like
codes; sizes lognormal with a median near 1 GB and a tail past 50 GB) and measures the three imports people
meet, each beside a baseline that does the same table and index work without validation:

- `national`: the programme office's initial load into an empty table (inventory_import, organisation=None).
  Baseline: COPY the same file into a table with the mailbox table's columns and no indexes, then run the
  mailbox table's own CREATE INDEX statements (every index, the unique ones included) on it.
- `reimport`: the same national file again into the full table, 10% of its rows changed and 1% new: the
  upsert path. Baseline: a plain COPY of that file into an empty table carrying all the mailbox table's
  indexes (the upsert must also find every row it changes, which the COPY need not).
- `organisation`: a trust's first 50,000-row inventory uploaded into a table already holding the national
  load. Baseline: COPY of the same rows into the full mailbox table itself, rolled back.

`--mode all` (the default) runs them in that order (each after the one before). One JSON line per mode:

    {"bench": "import", "mode": M, "rows": N, "seconds": S, "baseline_s": B, "ratio": S/B, "load": L}
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
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


def _copy_into(table: str, path: Path, columns: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor, path.open("rb") as source:
        text = ", ".join(c for c in ("display_name", "affinity_group", "target_upn") if c in columns)
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv, HEADER, FORCE_NOT_NULL ({text}))"
        with cursor.cursor.copy(sql) as copy:
            while block := source.read(1 << 20):
                copy.write(block)


def _baseline_table(*, indexes: bool) -> None:
    """A table shaped like the mailbox table (with an ods_code column for the national file's codes)."""
    from django.db import connection

    including = "INCLUDING ALL" if indexes else "INCLUDING DEFAULTS INCLUDING IDENTITY"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_baseline")
        cursor.execute(f"CREATE TABLE bench_copy_baseline (LIKE migrations_app_mailbox {including})")
        cursor.execute("ALTER TABLE bench_copy_baseline ADD COLUMN ods_code text")
        cursor.execute("ALTER TABLE bench_copy_baseline ALTER COLUMN organisation_id DROP NOT NULL")


def _drop_baseline_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy_baseline")


def baseline_national(path: Path) -> float:
    """COPY into a table without indexes, then the mailbox table's own index definitions, built on it."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'migrations_app_mailbox'::regclass"
        )
        definitions = [row[0] for row in cursor.fetchall()]
    _baseline_table(indexes=False)
    checkpoint()
    started = time.perf_counter()
    with transaction.atomic():
        _copy_into("bench_copy_baseline", path, COLUMNS)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for n, definition in enumerate(definitions):
                statement = re.sub(
                    r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ",
                    lambda m, n=n: f"CREATE {m.group(1) or ''}INDEX bench_idx_{n} ON bench_copy_baseline ",
                    definition,
                )
                cursor.execute(statement)
    seconds = time.perf_counter() - started
    _drop_baseline_table()
    log(f"baseline (COPY without indexes, then {len(definitions)} CREATE INDEX): {seconds:.1f} s")
    return seconds


def baseline_indexed_copy(path: Path) -> float:
    """A plain COPY of the file into an empty table carrying every index of the mailbox table."""
    from django.db import transaction

    _baseline_table(indexes=True)
    checkpoint()
    started = time.perf_counter()
    with transaction.atomic():
        _copy_into("bench_copy_baseline", path, COLUMNS)
    seconds = time.perf_counter() - started
    _drop_baseline_table()
    log(f"baseline (COPY into an indexed table): {seconds:.1f} s")
    return seconds


def baseline_copy_into_full_table(path: Path, organisation_id: int) -> float:
    """COPY the organisation's rows into the full mailbox table itself, then roll back."""
    from django.db import connection, transaction

    checkpoint()
    started = time.perf_counter()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"ALTER TABLE migrations_app_mailbox ALTER COLUMN organisation_id SET DEFAULT {int(organisation_id)}"
                )
            _copy_into("migrations_app_mailbox", path, ORG_COLUMNS)
            seconds = time.perf_counter() - started
            raise _RollBack
    except _RollBack:
        pass
    log(f"baseline (COPY into the full mailbox table, rolled back): {seconds:.1f} s")
    return seconds


class _RollBack(Exception):
    pass


ORG_COLUMNS = ["email", "display_name", "kind", "size_bytes", "item_count", "affinity_group", "target_upn"]


def reimport_file(national: Path, out: Path, rng: random.Random) -> int:
    """The national file again: 10% of rows changed (size, items, name), 1% new addresses."""
    rows = 0
    with (
        national.open(newline="", encoding="utf-8") as source,
        out.open("w", newline="", encoding="utf-8") as sink,
    ):
        reader, writer = csv.reader(source), csv.writer(sink)
        writer.writerow(next(reader))
        for n, row in enumerate(reader):
            roll = rng.random()
            if roll < 0.10:
                size = int(row[3]) + 1_000_000 + n
                row = [row[0], row[1] + " (moved)", row[2], str(size), str(size // 40_000), *row[5:]]
            writer.writerow(row)
            rows += 1
            if roll > 0.99:
                local, domain = row[0].split("@")
                writer.writerow(
                    [f"new.{local}@{domain}", "New starter", "user", "50000000", "1250", "", "", row[7]]
                )
                rows += 1
    return rows


def organisation_file(out: Path, code: str, rows: int) -> None:
    with out.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(ORG_COLUMNS)
        for n in range(rows):
            size = 500_000_000 + n * 1_000
            writer.writerow(
                [f"staff{n}@{code.lower()}.nhs.uk", f"Staff member {n}", "user", size, size // 40_000, "", ""]
            )


def _import(path: Path, organisation) -> tuple[float, object]:
    from migrations_app.services.imports import inventory_import

    checkpoint()
    started = time.perf_counter()
    with path.open("rb") as source:
        result = inventory_import(
            source=source, organisation=organisation, actor=None, total_bytes=path.stat().st_size
        )
    seconds = time.perf_counter() - started
    log(
        f"import: {result.status}, created {result.created}, updated {getattr(result, 'updated', '?')}, "
        f"errors {result.error_count}, {seconds:.1f} s"
    )
    if result.status != "succeeded":
        log(f"unexpected result: {result.errors[:5]}")
        sys.exit(1)
    return seconds, result


def emit(mode: str, rows: int, seconds: float, baseline: float) -> None:
    print(
        json.dumps(
            {
                "bench": "import",
                "mode": mode,
                "rows": rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(rows / seconds),
                "baseline_s": round(baseline, 2),
                "ratio": round(seconds / baseline, 2),
                "load": round(os.getloadavg()[0], 2),
            }
        ),
        flush=True,
    )


MODES = ("national", "reimport", "organisation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_100_000)
    parser.add_argument("--org-rows", type=int, default=50_000, help="rows of the organisation mode's file")
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    modes = MODES if args.mode == "all" else MODES[: MODES.index(args.mode) + 1]
    # reimport and organisation need the national load before them; only the chosen mode's line is printed
    shown = MODES if args.mode == "all" else (args.mode,)

    scratch_database_url("portal_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")  # development defaults for the secrets; the database is DATABASE_URL
    import django

    django.setup()

    from migrations_app.models import Mailbox, Organisation

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

        seconds, result = _import(path, None)
        if result.created != args.rows or Mailbox.objects.count() != args.rows:
            sys.exit(f"national load created {result.created} of {args.rows} rows")
        if "national" in shown:
            emit("national", args.rows, seconds, baseline_national(path))

        if "reimport" in modes:
            again = Path(tmp) / "reimport.csv"
            rows = reimport_file(path, again, rng)
            seconds, result = _import(again, None)
            if Mailbox.objects.count() != rows:
                sys.exit(f"after the re-import the table holds {Mailbox.objects.count()} rows, not {rows}")
            if "reimport" in shown:
                emit("reimport", rows, seconds, baseline_indexed_copy(again))

        if "organisation" in modes:
            trust = Organisation.objects.create(
                ods_code="RBENCH1", name="Bench trust", kind="trust", region=Organisation.Region.LONDON
            )
            upload = Path(tmp) / "organisation.csv"
            organisation_file(upload, trust.ods_code, args.org_rows)
            baseline = baseline_copy_into_full_table(upload, trust.pk)
            seconds, result = _import(upload, trust)
            if result.created != args.org_rows:
                sys.exit(f"the organisation upload created {result.created} of {args.org_rows} rows")
            emit("organisation", args.org_rows, seconds, baseline)


if __name__ == "__main__":
    main()
