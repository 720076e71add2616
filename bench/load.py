"""Thousands of trust admins watching their waves: how many requests a second, and how fast, on this machine?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_pages_bench CACHE_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python -m bench.load --admins 2000 --seconds 30

Uses bench.pages' national programme in the same scratch database (run bench.pages first, or pass --build to
generate it here). `--admins` trust admins are made, each administering one organisation of the running wave,
each with a signed-in session. The portal is served by gunicorn with the production profile; the load comes
from Debian's `wrk` (C, an event loop per thread: little CPU beside the server), closed loop (each connection
sends its next request when the last one is answered; no think time, so far more pressure than the same number
of people), as four concurrent runs, one per request kind, so each kind's latency is measured on its own
while all four load the server together:

- poll (80%): the running wave's live fragment, as htmx asks for it every 3 s: `HX-Request`, and the ETag of
  the last answer in `If-None-Match`, as a browser revalidates (one connection per wrk thread, so each keeps
  its own last ETag);
- dashboard (10%), organisation (5%): the trust admin's own pages;
- search (5%): a prefix of one of the admin's own mailboxes.

Connections are split so that the requests come out near 80/10/5/5; each line reports the share it got.
Requests answered other than 200/304 count as errors. First a line for the favourable regime, beside the
figures and never the headline (polls alone: every answer a 304 from the shared cache), then one JSON line per
kind, then one for the whole mix (p95 from the four latency histograms merged), each with the load average:

    {"bench": "load", "kind": K, "requests": N, "requests_per_s": R, "share": S, "p50_ms": .., "p95_ms": ..,
     "errors": E, "load": L}
    {"bench": "load", "kind": "mix", "requests_per_s": R, "p95_ms": P, "connections": C, "seconds": T, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench._scratch import log, scratch_database_url

# kind -> (share of requests, connections per 32 at the start; adjusted after the calibration run)
KINDS = {"poll": 0.80, "dashboard": 0.10, "organisation": 0.05, "search": 0.05}

LUA = r"""
-- One wrk thread per connection: each thread keeps its own session and, for polls, its last ETag.
local targets = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
end

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    local cookie, url = line:match("([^\t]+)\t(.+)")
    table.insert(targets, {cookie = cookie, url = url})
  end
  mine = targets[(index - 1) % #targets + 1]
  etag = nil
  pick = 0
end

function request()
  local t = mine
  if KIND ~= "poll" then
    pick = pick % #targets + 1
    t = targets[pick]
  end
  local headers = {Cookie = t.cookie, Host = "127.0.0.1"}
  if KIND == "poll" then
    headers["HX-Request"] = "true"
    if etag then headers["If-None-Match"] = etag end
  end
  return wrk.format("GET", t.url, headers)
end

function response(status, headers, body)
  if status == 200 or status == 304 then
    if headers["ETag"] then etag = headers["ETag"] end
  end
end

function done(summary, latency, requests)
  local buckets = {}
  for i = 1, #latency do
    local value, count = latency(i)
    table.insert(buckets, string.format("[%d,%d]", value, count))
  end
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
            + summary.errors.write + summary.errors.timeout
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, ' ..
    '"p95_us": %d, "histogram": [%s]}\n', summary.requests, summary.duration, bad,
    latency:percentile(50), latency:percentile(95), table.concat(buckets, ",")))
end
"""


def build_targets(args, env: dict[str, str]) -> dict[str, list[str]]:
    """Trust admins of the running wave's organisations, their sessions, and each kind's URLs."""
    from django.db import connection

    from bench._http import session_cookie
    from migrations_app.models import Mailbox, Organisation, User, Wave

    wave = Wave.objects.get(status=Wave.Status.RUNNING)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT organisation_id FROM migrations_app_mailbox WHERE wave_id = %s ORDER BY 1",
            [wave.pk],
        )
        org_ids = [row[0] for row in cursor.fetchall()]
    organisations = {o.pk: o for o in Organisation.objects.filter(pk__in=org_ids)}
    rng = random.Random(7)
    existing = {u.username: u for u in User.objects.filter(username__startswith="load-admin-")}
    lines: dict[str, list[str]] = {kind: [] for kind in KINDS}
    memberships = []
    for n in range(args.admins):
        org = organisations[org_ids[n % len(org_ids)]]
        user = existing.get(f"load-admin-{n}")
        if user is None:
            user = User.objects.create(username=f"load-admin-{n}", role="trust_admin")
        memberships.append(User.organisations.through(user_id=user.pk, organisation_id=org.pk))
        cookie = session_cookie(user, secret_key=env["SECRET_KEY"])
        lines["poll"].append(f"{cookie}\t/waves/{wave.pk}/live/")
        lines["dashboard"].append(f"{cookie}\t/dashboard/")
        lines["organisation"].append(f"{cookie}\t/organisations/{org.ods_code}/")
        email = None
        if n < 400:  # searches by a few hundred admins, of their own mailboxes
            emails = list(
                Mailbox.objects.filter(organisation=org).order_by("id").values_list("email", flat=True)[:50]
            )
            email = rng.choice(emails) if emails else None
        if email:
            lines["search"].append(f"{cookie}\t/mailboxes/?q={email[: max(3, len(email) // 2)]}")
    User.organisations.through.objects.bulk_create(memberships, ignore_conflicts=True)
    log(f"{args.admins:,} trust admins over {len(org_ids):,} organisations of the running wave {wave.name}")
    return lines


def run_wrk(kind: str, connections: int, seconds: int, port: int, targets: Path, script: Path):
    command = [
        "wrk",
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
        "--",
        str(targets),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result_of(process) -> dict:
    out, _ = process.communicate()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise SystemExit(f"wrk printed no result:\n{out}")


def percentile(histogram: list[list[int]], p: float) -> float:
    total = sum(count for _, count in histogram)
    seen = 0
    for value, count in sorted(histogram):
        seen += count
        if seen >= total * p / 100:
            return value
    return 0.0


def load_run(connections: dict[str, int], seconds: int, port: int, tmp: Path, script_dir: Path) -> dict:
    processes = {
        kind: run_wrk(kind, n, seconds, port, tmp / f"{kind}.txt", script_dir / f"{kind}.lua")
        for kind, n in connections.items()
    }
    return {kind: result_of(p) for kind, p in processes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--admins", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=32, help="all four runs together")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--port", type=int, default=8392)
    parser.add_argument("--polls-only-seconds", type=int, default=15, help="the favourable regime's run")
    parser.add_argument("--build", action="store_true", help="generate bench.pages' programme first")
    parser.add_argument("--mailboxes", type=int, default=2_100_000)
    parser.add_argument("--orgs", type=int, default=22_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--seed", type=float, default=0.42)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("This benchmark needs wrk: apt-get install wrk")

    scratch_database_url("portal_pages_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.core.management import call_command

    from bench._http import gunicorn, production_env
    from bench.pages import build
    from migrations_app.models import Wave

    if args.build:
        build(args)
    else:
        call_command("migrate", verbosity=0, interactive=False)  # data from an earlier schema
        if not Wave.objects.filter(status=Wave.Status.RUNNING).exists():
            build(args)
    env = production_env()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as name:
        tmp = Path(name)
        for kind, lines in build_targets(args, env).items():
            (tmp / f"{kind}.txt").write_text("\n".join(lines) + "\n")
            (tmp / f"{kind}.lua").write_text(f'KIND = "{kind}"\n' + LUA)
        with gunicorn(port=args.port, workers=args.workers, threads=args.threads, env=env):
            # calibration: connections by Little's law (in flight = rate x latency), so each kind's share of
            # requests comes out near the mix: c_k proportional to share_k x latency_k, with the latencies
            # measured in the mix itself; four short rounds, since each kind's latency moves with the others'
            connections = {kind: max(1, round(args.connections * share)) for kind, share in KINDS.items()}
            for round_ in range(4):
                log(f"calibrating ({round_ + 1}/4) with {connections} for 4 s ...")
                probe = load_run(connections, 4, args.port, tmp, tmp)
                latency = {
                    k: connections[k] * r["duration_us"] / max(1, r["requests"]) for k, r in probe.items()
                }
                weight = sum(KINDS[k] * latency[k] for k in KINDS)
                wanted = {k: args.connections * KINDS[k] * latency[k] / weight for k in KINDS}
                # halfway from the last round's: a kind's latency moves with the others' connections
                connections = {k: max(1, round((connections[k] + wanted[k]) / 2)) for k in KINDS}
            log(f"measuring with {connections} for {args.seconds} s ...")
            results = load_run(connections, args.seconds, args.port, tmp, tmp)
            load = os.getloadavg()[0]
            # beside it, not as the headline: polls alone (the favourable regime: every answer a 304 from the
            # shared cache)
            log(f"polls alone with {args.connections} connections for {args.polls_only_seconds} s ...")
            polls_only = load_run({"poll": args.connections}, args.polls_only_seconds, args.port, tmp, tmp)[
                "poll"
            ]
    print(
        json.dumps(
            {
                "bench": "load",
                "kind": "polls_only",
                "regime": "favourable (not the mix): polls alone, every answer a 304 from the shared cache",
                "requests": polls_only["requests"],
                "requests_per_s": round(polls_only["requests"] / (polls_only["duration_us"] / 1e6), 1),
                "p50_ms": round(polls_only["p50_us"] / 1000, 1),
                "p95_ms": round(polls_only["p95_us"] / 1000, 1),
                "errors": polls_only["errors"],
                "connections": args.connections,
                "load": round(os.getloadavg()[0], 2),
            }
        ),
        flush=True,
    )
    total = sum(r["requests"] for r in results.values())
    seconds = max(r["duration_us"] for r in results.values()) / 1e6
    merged: list[list[int]] = []
    for kind, r in results.items():
        merged.extend(r["histogram"])
        print(
            json.dumps(
                {
                    "bench": "load",
                    "kind": kind,
                    "requests": r["requests"],
                    "requests_per_s": round(r["requests"] / (r["duration_us"] / 1e6), 1),
                    "share": round(r["requests"] / total, 3),
                    "connections": connections[kind],
                    "p50_ms": round(r["p50_us"] / 1000, 1),
                    "p95_ms": round(r["p95_us"] / 1000, 1),
                    "errors": r["errors"],
                    "load": round(load, 2),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "bench": "load",
                "kind": "mix",
                "requests": total,
                "requests_per_s": round(total / seconds, 1),
                "p50_ms": round(percentile(merged, 50) / 1000, 1),
                "p95_ms": round(percentile(merged, 95) / 1000, 1),
                "errors": sum(r["errors"] for r in results.values()),
                "connections": sum(connections.values()),
                "admins": args.admins,
                "seconds": round(seconds, 1),
                "gunicorn": f"{args.workers}x{args.threads}",
                "load": round(load, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
