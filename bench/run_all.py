"""Run the benchmarks and write README's table of figures from what they print.

    make bench                         # every benchmark (PostgreSQL and Redis on this machine; about an hour)
    make bench BENCH="pages load"      # some of them; the others keep their last figures

Each benchmark runs as its own process with its scratch database and Redis database, prints its JSON lines
on stdout (its progress on stderr, shown as it runs); those lines, with when they were taken, are kept in
bench/results.json, and README's table between the `bench-table` markers is written again from that file, so
the figures in README are the benchmarks' own output, never typed by hand. A benchmark that fails keeps its
previous figures and makes the run exit non-zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
README = ROOT / "README.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
PG = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")


@dataclass
class Bench:
    name: str
    args: list[str]
    what: str
    target: str
    database: str = ""
    redis_db: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.database:
            env["DATABASE_URL"] = f"{PG}/{self.database}"
        env["CELERY_BROKER_URL"] = f"{REDIS}/{self.redis_db}"
        env["CACHE_URL"] = f"{REDIS}/{self.redis_db + 1}"
        env.update(self.env)
        return env


BENCHES = [
    Bench(
        "import",
        ["-m", "bench.import_inventory"],
        "2,100,000-row national file: the initial load, a re-import (10% changed, 1% new) and a trust's "
        "50,000-row upload into the full table, each beside a COPY doing the same index work",
        "national ≤ 45 s and ratio ≤ 1.2; re-import ≤ 90 s and ≤ 2× COPY; organisation ≤ 5 s",
        database="portal_bench",
        redis_db=2,
    ),
    Bench(
        "plan",
        ["-m", "bench.plan", "--mailboxes", "2100000", "--orgs", "22000"],
        "the whole programme planned and saved",
        "≤ 15 s",
        database="portal_plan_bench",
        redis_db=2,
    ),
    Bench(
        "orchestrate",
        ["-m", "bench.orchestrate", "--regime", "both", "--mailboxes", "22000", "--copy-seconds", "60"],
        "one evening wave of 22,000 mailboxes through real worker processes: instant copies (the control "
        "plane's own cost), then 1,000 copies in flight at once, each holding its slot for 60 s",
        "instant ≤ 60 s; in flight: 1,000 at once within 6 GB of worker RSS and 60 connections, heartbeat "
        "lag p99 ≤ 30 s",
        database="portal_orchestrate_bench",
        redis_db=4,
    ),
    Bench(
        "readiness",
        ["-m", "bench.readiness", "--scope", "programme"],
        "100,000 mailboxes over 1,000 organisations pre-flighted through real workers",
        "≤ 60 s",
        database="portal_readiness_bench",
        redis_db=6,
    ),
    Bench(
        "api",
        ["-m", "bench.api"],
        "REST API on 2,100,000 mailboxes: first page, a trust's filtered list, a page 2,000,000 deep, and a "
        "100,000-row upsert into an organisation that has them (half changed)",
        "list and deep page p95 ≤ 50 ms; bulk ≤ 10 s",
        database="portal_api_bench",
        redis_db=8,
    ),
    Bench(
        "pages",
        ["-m", "bench.pages"],
        "pages over HTTP (gunicorn, production profile) with 2.1M mailboxes, 22,000 organisations and 20M "
        "audit events",
        "pages p95 ≤ 150 ms, search ≤ 30 ms, audit ≤ 150 ms at every depth",
        database="portal_pages_bench",
        redis_db=10,
    ),
    Bench(
        "load",
        ["-m", "bench.load"],
        "2,000 trust admins watching their waves (80% live-fragment polls, 10% dashboard, 5% organisation, "
        "5% search) driven by wrk (32 connections, closed loop) against gunicorn (3 sync workers), on "
        "bench.pages' data",
        "≥ 300 requests/s with p95 ≤ 200 ms",
        database="portal_pages_bench",
        redis_db=10,
    ),
    Bench(
        "imap_copy",
        ["-m", "bench.imap_copy"],
        "IMAP to IMAP between two private Dovecot instances, against mbsync",
        "ratio ≤ 1.0 with one connection, ≤ 0.5 by default; incremental < 1 s; RSS < 200 MB",
    ),
    Bench(
        "graph_copy",
        ["-m", "bench.graph_copy", "--mailbox-mb", "1500"],
        "a 1,500 MB mailbox from IMAP into the fake Exchange Online (Graph) against its 150 MB / 5 min upload "
        "budget, time scaled: production-sized requests (the headline), then coarse ones",
        "pacing efficiency ≥ 0.9 with no failed attempt",
    ),
    Bench(
        "exchange_copy",
        ["-m", "bench.exchange_copy"],
        "5,000-item mixed mailbox from the fake Exchange 2013 (EWS) into the fake Graph import, 40 ms a request",
        "every item once, byte for byte",
    ),
    Bench(
        "switch",
        ["-m", "bench.switch"],
        "22,000 switches through the orchestrator against the fake Exchange PowerShell (300 ms a cmdlet)",
        "≤ 10 minutes",
        database="portal_switch_bench",
        redis_db=12,
    ),
    Bench(
        "notify",
        ["-m", "bench.notify"],
        "the T-3 notifications of an 83,000-mailbox weekend scheduled and handed to the fake Notify",
        "≤ 60 s of portal time",
        database="portal_notify_bench",
        redis_db=12,
    ),
]


def run(bench: Bench) -> list[dict]:
    command = [sys.executable, *bench.args]
    print(f"== {bench.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=ROOT, env=bench.environment(), stdout=subprocess.PIPE, text=True)
    lines = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{bench.name} exited {result.returncode} with {len(lines)} JSON lines")
    return lines


def table(results: dict) -> str:
    rows = [
        "| benchmark | what it measures | figures (its own JSON lines) | target |",
        "|---|---|---|---|",
    ]
    for bench in BENCHES:
        kept = results.get(bench.name)
        if kept:
            figures = "<br>".join(f"`{json.dumps(line)}`" for line in kept["lines"])
            figures += f"<br>run {kept['ran_at']} on {kept['machine']}"
        else:
            figures = "not run yet"
        rows.append(f"| `python {' '.join(bench.args)}` | {bench.what} | {figures} | {bench.target} |")
    return "\n".join(rows)


def write_readme(results: dict) -> None:
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    README.write_text(f"{before}{START}\n{table(results)}\n{END}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(b.name for b in BENCHES)}")
    parser.add_argument("--readme-only", action="store_true", help="only write README from results.json")
    args = parser.parse_args()
    known = {b.name: b for b in BENCHES}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    failed = []
    if not args.readme_only:
        for name in args.names or list(known):
            try:
                lines = run(known[name])
            except (RuntimeError, json.JSONDecodeError) as exc:
                print(f"!! {exc}", file=sys.stderr, flush=True)
                failed.append(name)
                continue
            results[name] = {
                "lines": lines,
                "ran_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
            }
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_readme(results)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their previous figures are kept)")


if __name__ == "__main__":
    main()
