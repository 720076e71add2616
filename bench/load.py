"""Thousands of trust admins watching their waves: how many requests a second, and how fast, on this machine?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_pages_bench CACHE_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python -m bench.load --admins 2000 --seconds 30

Uses bench.pages' national programme in the same scratch database (run bench.pages first, or pass --build to
generate it here). `--admins` trust admins are made, each administering one organisation of the running wave,
each with a signed-in session. The portal is served by gunicorn with the production profile, three sync workers
on the two cores (README: each worker one request at a time, the rest wait in the kernel's accept queue in
arrival order; with threads, Python's lock shares a core between a 30 ms page and the polls behind it, and p95
rose from ~150 to 200-250 ms at the same throughput: 3x4 threads, 2x4, 3x2 and gthread 3x1 were measured); the load comes
from Debian's `wrk` (C, an event loop per thread: little CPU beside the server), closed loop (each connection
sends its next request when the last one is answered; no think time, so far more pressure than the same number
of people). Every request picks its kind at random with the mix's weights, so the mix holds whatever each kind
costs (four runs of one kind each, their connections calibrated to the mix, could not hold it: a cheap kind
crowds out the dear ones), and each is timed by kind inside wrk's script:

- poll (80%): the running wave's live fragment, as htmx asks for it every 3 s: `HX-Request`, and the ETag of
  the last answer in `If-None-Match`, as a browser revalidates (one connection per wrk thread: each is one
  admin's browser, with its own session and last ETag);
- dashboard (10%), organisation (5%): the trust admin's own pages;
- search (5%): a prefix of one of the admin's own mailboxes.

Each line reports the share it got. Requests answered other than 200/304 count as errors. First a line for the favourable regime, beside the
figures and never the headline (polls alone: every answer a 304 from the shared cache), then one JSON line per
kind, then one for the whole mix (p95 from the four latency histograms merged, whole milliseconds), each with
the load average:

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

# kind -> its share of the requests
KINDS = {"poll": 0.80, "dashboard": 0.10, "organisation": 0.05, "search": 0.05}

LUA = r"""
-- One wrk thread per connection. Every request picks its kind at random with the mix's weights (WEIGHTS,
-- set above this script), so the mix holds whatever each kind costs; each thread times its own requests
-- with the monotonic clock (LuaJIT's FFI: wrk's own latency figures are not split by kind) in whole
-- milliseconds, which done() gathers from every thread into one histogram per kind.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local KINDS = {"poll", "dashboard", "organisation", "search"}
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  targets = {}
  for i, kind in ipairs(KINDS) do
    targets[kind] = {}
    for line in io.lines(args[i]) do
      local cookie, url = line:match("([^\t]+)\t(.+)")
      if cookie then table.insert(targets[kind], {cookie = cookie, url = url}) end
    end
  end
  math.randomseed(index * 7919)
  -- a poller is one admin's browser: one session, and the ETag of its last answer
  mine = targets.poll[(index - 1) % #targets.poll + 1]
  etag = nil
  picks = {dashboard = index, organisation = index, search = index}
  timings = ""  -- "<kind's first letter><ms>:<1 if 200/304>," per answer
  current, started = nil, 0
end

function request()
  local r, acc, kind = math.random(), 0, "search"
  for i, k in ipairs(KINDS) do
    acc = acc + WEIGHTS[i]
    if r <= acc then kind = k; break end
  end
  local t = mine
  if kind ~= "poll" then
    picks[kind] = picks[kind] % #targets[kind] + 1
    t = targets[kind][picks[kind]]
  end
  local headers = {Cookie = t.cookie, Host = "127.0.0.1"}
  if kind == "poll" then
    headers["HX-Request"] = "true"
    if etag then headers["If-None-Match"] = etag end
  end
  current, started = kind, now_us()
  return wrk.format("GET", t.url, headers)
end

function response(status, headers, body)
  local ms = math.floor((now_us() - started) / 1000)
  local ok = (status == 200 or status == 304) and 1 or 0
  if current == "poll" and ok == 1 and headers["ETag"] then etag = headers["ETag"] end
  -- kept as one string: wrk copies a thread's globals to done() and crashes on a large table
  timings = timings .. current:sub(1, 1) .. ms .. ":" .. ok .. ","
end

function done(summary, latency, requests)
  local names = {p = "poll", d = "dashboard", o = "organisation", s = "search"}
  local hist, counts, errors = {}, {}, {}
  for _, kind in ipairs(KINDS) do hist[kind] = {}; counts[kind] = 0; errors[kind] = 0 end
  for _, thread in ipairs(threads) do
    for letter, ms, ok in thread:get("timings"):gmatch("(%a)(%d+):(%d),") do
      local kind, bucket = names[letter], tonumber(ms)
      hist[kind][bucket] = (hist[kind][bucket] or 0) + 1
      counts[kind] = counts[kind] + 1
      if ok == "0" then errors[kind] = errors[kind] + 1 end
    end
  end
  local out = {}
  for _, kind in ipairs(KINDS) do
    local buckets = {}
    for ms, c in pairs(hist[kind]) do table.insert(buckets, string.format("[%d,%d]", ms, c)) end
    table.insert(out, string.format('"%s": {"requests": %d, "errors": %d, "histogram": [%s]}',
      kind, counts[kind], errors[kind], table.concat(buckets, ",")))
  end
  local broken = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('RESULT {"duration_us": %d, "socket_errors": %d, "kinds": {%s}}\n',
    summary.duration, broken, table.concat(out, ", ")))
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


def run_wrk(*, weights: dict[str, float], connections: int, seconds: int, port: int, tmp: Path) -> dict:
    """One wrk run, every connection mixing the kinds by `weights`; its RESULT line as a dict."""
    script = tmp / "mix.lua"  # written afresh for each run (the runs follow one another)
    script.write_text(f"WEIGHTS = {{{', '.join(str(weights[k]) for k in KINDS)}}}\n" + LUA)
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
        *(str(tmp / f"{kind}.txt") for kind in KINDS),
    ]
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
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


def figures(kind: str, result: dict, seconds: float, load: float, **extra) -> dict:
    histogram = result["histogram"]
    return {
        "bench": "load",
        "kind": kind,
        **extra,
        "requests": result["requests"],
        "requests_per_s": round(result["requests"] / seconds, 1),
        "p50_ms": percentile(histogram, 50),
        "p95_ms": percentile(histogram, 95),
        "errors": result["errors"],
        "load": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--admins", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (one thread each)")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (cores + 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per gunicorn worker (1: sync workers, as README serves it)",
    )
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
        with gunicorn(port=args.port, workers=args.workers, threads=args.threads, env=env):
            log("warming up for 3 s ...")
            run_wrk(weights=KINDS, connections=args.connections, seconds=3, port=args.port, tmp=tmp)
            log(f"the mix {KINDS} on {args.connections} connections for {args.seconds} s ...")
            mix = run_wrk(
                weights=KINDS, connections=args.connections, seconds=args.seconds, port=args.port, tmp=tmp
            )
            load = os.getloadavg()[0]
            # beside it, never the headline: polls alone (every answer a 304 from the shared cache)
            log(f"polls alone for {args.polls_only_seconds} s ...")
            alone = {"poll": 1.0, "dashboard": 0.0, "organisation": 0.0, "search": 0.0}
            polls = run_wrk(
                weights=alone,
                connections=args.connections,
                seconds=args.polls_only_seconds,
                port=args.port,
                tmp=tmp,
            )
            polls_load = os.getloadavg()[0]
    regime = "favourable (not the mix): polls alone, every answer a 304 from the shared cache"
    line = figures(
        "polls_only", polls["kinds"]["poll"], polls["duration_us"] / 1e6, polls_load, regime=regime
    )
    print(json.dumps({**line, "errors": line["errors"] + polls["socket_errors"]}), flush=True)
    seconds = mix["duration_us"] / 1e6
    total = sum(r["requests"] for r in mix["kinds"].values())
    for kind in KINDS:
        result = mix["kinds"][kind]
        share = round(result["requests"] / max(1, total), 3)
        print(json.dumps(figures(kind, result, seconds, load, share=share)), flush=True)
    merged = [bucket for result in mix["kinds"].values() for bucket in result["histogram"]]
    print(
        json.dumps(
            {
                "bench": "load",
                "kind": "mix",
                "requests": total,
                "requests_per_s": round(total / seconds, 1),
                "p50_ms": percentile(merged, 50),
                "p95_ms": percentile(merged, 95),
                "errors": sum(r["errors"] for r in mix["kinds"].values()) + mix["socket_errors"],
                "connections": args.connections,
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
