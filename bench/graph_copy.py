"""What $batch and the 4 concurrent requests buy the graph engine, against a Graph that takes time to answer.

    python -m bench.graph_copy [--messages 1000] [--mb 40] [--latency-ms 40]
    python -m bench.graph_copy --mailbox-mb 1500 [--regimes production,coarse] [--time-scale N]

A private Dovecot (tests/engines/dovecot.py) holds one generated mailbox (bench.imap_copy's mix of folders,
flags and sizes); the fake Exchange Online (tests/fakes/microsoft.py) answers each Graph call after
`--latency-ms` per HTTP request (the round trip to Microsoft) plus `--op-ms` per operation (a $batch's
sub-requests each). The mailbox is copied twice into fresh users:
the engine as it is ($batch of up to 20 creates, 4 threads), and with one message per request
(`batch_messages=1`). Prints one JSON line: seconds, messages per second and HTTP requests per message for
both, the highest number of concurrent requests the fake saw for the mailbox (Graph's limit is 4), and
ratio = batched seconds / unbatched seconds. No Microsoft service is contacted.

With --mailbox-mb, the pacing figure instead: a mailbox of that size against Graph's upload budget (150 MB
in 5 minutes per mailbox), bytes and time both divided by the regime's time scale (the same arithmetic: 1500 MB
is ten budgets either way), the fake refusing (429) what goes over the budget. One JSON line per regime (REGIMES):
"production" first, the headline (each request the share of the budget a production request is), then
"coarse", the favourable one (a tenth of the budget a request). Fields:

- pacing_efficiency (the issue's figure, the headline): the achieved upload rate over the budget's rate, the
  whole run from the first IMAP login, start-up included: (mailbox bytes - one budget) / seconds over the
  budget's rate (the first budget goes out at once); pacing_efficiency_best is the most any client could
  score for this mailbox (uploads go in whole windows: a mailbox of 10.19 budgets needs ten full windows after
  the first burst, so 9.19 / 10);
- window_fill: how full Graph's sliding window was on average while the copy was paced, as the fake counted it
  (window_use()): the pacing's own quality, start-up and the last part-window left out;
- failed_attempts (syncs that ended in an error and had to be retried: pacing needs none),
  over_budget_refusals (429s from the fake for going over the budget: none) and peak_window_bytes (the most
  the fake saw in one window, never over budget_bytes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.imap_copy import generate, seed_source
from migrations_app.engines import EndpointSpec, MailboxSpec, get_engine
from migrations_app.engines.graph.message import INLINE_BYTES
from migrations_app.engines.graph_client import UPLOAD_BUDGET_BYTES, UPLOAD_WINDOW_SECONDS
from tests.engines import mailgen
from tests.engines.dovecot import dovecot_binary, start_dovecot
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.outbound import allow_fake_in_environment


def copy_once(fake: FakeMicrosoft, source, user: str, upn: str, **engine_options) -> dict:
    mailbox = fake.add_user(upn)
    spec = MailboxSpec(
        email=upn,
        source=EndpointSpec("imap", source.host, source.port, "plain", user, "secret"),
        target=EndpointSpec("graph", fake.tenant_id, 0, "tls", fake.client_id, fake.client_secret),
        target_user=upn,
    )
    engine = get_engine("graph", http_client=fake.session(), **engine_options)
    before = sum(fake.http_requests.values())
    started = time.perf_counter()
    result = engine.sync(spec)
    seconds = time.perf_counter() - started
    requests = sum(fake.http_requests.values()) - before
    verified = engine.verify(spec)
    assert verified.ok, verified.differences
    return {
        "seconds": round(seconds, 2),
        "messages": result.items_copied,
        "messages_per_s": round(result.items_copied / seconds, 1),
        "requests_per_message": round(requests / max(1, result.items_copied), 3),
        "max_concurrency": fake.max_concurrency[mailbox.user_id],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--mb", type=float, default=40)
    parser.add_argument("--latency-ms", type=float, default=40, help="per HTTP request (round trip)")
    parser.add_argument("--op-ms", type=float, default=5, help="per Graph operation (Exchange's work)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--mailbox-mb", type=float, default=0, help="the pacing figure for a mailbox this big"
    )
    parser.add_argument(
        "--time-scale", type=float, default=0, help="bytes and time divided by this (default: the regime's)"
    )
    parser.add_argument(
        "--regimes",
        default="production,coarse",
        help=f"pacing regimes, of {', '.join(REGIMES)}; the first is the headline",
    )
    args = parser.parse_args(argv)
    if args.mailbox_mb:
        return pacing(args)
    if dovecot_binary() is None:
        print("needs dovecot: apt-get install dovecot-imapd", file=sys.stderr)
        return 2

    source = start_dovecot("/", quota=False)
    fake = FakeMicrosoft()
    allow_fake_in_environment(fake.base)  # the engine reaches the fake through the outbound rules
    fake.latency = args.latency_ms / 1000
    fake.op_time = args.op_ms / 1000
    try:
        user = source.new_user()
        client = mailgen.client(source, user, tls=False)
        messages = generate(args.messages, int(args.mb * 1024 * 1024), args.seed)
        seed_source(client, messages)
        client.logout()
        batched = copy_once(fake, source, user, "batched@bench.onmicrosoft.com")
        print(f"# batched: {batched}", file=sys.stderr)
        single = copy_once(fake, source, user, "single@bench.onmicrosoft.com", batch_messages=1)
        print(f"# one per request: {single}", file=sys.stderr)
        print(
            json.dumps(
                {
                    "bench": "graph_copy",
                    "messages": batched["messages"],
                    "mb": round(sum(len(m["msg"]) for _, m in messages) / 1024 / 1024, 1),
                    "latency_ms": args.latency_ms,
                    "op_ms": args.op_ms,
                    "seconds": batched["seconds"],
                    "messages_per_s": batched["messages_per_s"],
                    "requests_per_message": batched["requests_per_message"],
                    "max_concurrency": batched["max_concurrency"],
                    "unbatched_seconds": single["seconds"],
                    "unbatched_requests_per_message": single["requests_per_message"],
                    "ratio": round(batched["seconds"] / single["seconds"], 3),
                }
            )
        )
    finally:
        fake.stop()
        source.stop()
    return 0


# Regimes of the pacing figure. "production" is the headline: each request carries the share of the budget a
# production request does (Graph's 4 MB request limit, 2.5 MB of mail, against 150 MB: 1/63), five messages a
# request, and time is scaled down only tenfold (a 30 s window): the requests per second stay near what one
# mailbox sends Graph in production, so the figure is the pacing's and not this machine's request overhead,
# which at a hundredfold scale (3 s windows, 20 requests a second) eats the window. An upload counts from
# when Graph answered it (the safe side of when Graph counted it), so each window is stretched by one
# request's round trip: a second in 300 s in production, the same second in 3 s at a hundredfold scale.
# "coarse" is the favourable one beside it (the previous figure's): a tenth of the budget a request, 500
# messages, a hundredfold scale.
REGIMES = {
    "production": {"share": INLINE_BYTES / UPLOAD_BUDGET_BYTES, "per_request": 5, "time_scale": 10},
    "coarse": {"share": 0.1, "messages": 500, "time_scale": 100},
}


def window_use(arrivals: list[tuple[float, int]], budget: int, window: float) -> float:
    """How full Graph's sliding window was, on average, while the copy was paced: the bytes the server
    accepted in the window ending at t, over the budget, averaged over t from one window after the first
    upload to one window before the last (the start fills the first window at once, the end is a partial
    one: neither is pacing). 1.0 is a window used to the last byte all the time; it is the achieved upload
    rate over the budget's rate, as the server saw it."""
    times = [t for t, _ in arrivals]
    start, end = times[0] + window, times[-1] - window
    if end <= start:
        return 0.0
    steps, total = 400, 0.0
    for k in range(steps + 1):
        t = start + (end - start) * k / steps
        total += sum(n for at, n in arrivals if t - window < at <= t) / budget
    return total / (steps + 1)


def pacing(args) -> int:
    for regime in args.regimes.split(","):
        pacing_run(args, regime)
    return 0


def pacing_run(args, regime: str) -> None:
    import math
    import os

    from migrations_app.engines import RetryableError

    scale = args.time_scale or REGIMES[regime]["time_scale"]
    budget = int(UPLOAD_BUDGET_BYTES / scale)
    window = UPLOAD_WINDOW_SECONDS / scale
    size = int(args.mailbox_mb * 1024 * 1024 / scale)
    batch_bytes = int(budget * REGIMES[regime]["share"])
    if "messages" in REGIMES[regime]:
        message_bytes = size // REGIMES[regime]["messages"]
    else:
        message_bytes = int(batch_bytes / REGIMES[regime]["per_request"])
    source = start_dovecot("/", quota=False)
    fake = FakeMicrosoft()
    allow_fake_in_environment(fake.base)  # the engine reaches the fake through the outbound rules
    fake.limit_uploads(budget, window_seconds=window)
    try:
        user = source.new_user()
        client = mailgen.client(source, user, tls=False)
        count = max(1, size // message_bytes)  # the size is what the budget counts
        messages = [mailgen.message(n, size=message_bytes) for n in range(count)]
        mailgen.append(client, "INBOX", [{"msg": m, "flags": []} for m in messages])
        client.logout()
        total = sum(len(m) for m in messages)
        upn = f"paced-{regime}@bench.onmicrosoft.com"
        mailbox = fake.add_user(upn)
        spec = MailboxSpec(
            email=upn,
            source=EndpointSpec("imap", source.host, source.port, "plain", user, "secret"),
            target=EndpointSpec(
                "graph", fake.tenant_id, 0, "tls", fake.client_id, fake.client_secret, {"import_mode": "mime"}
            ),
            target_user=upn,
        )
        engine = get_engine(
            "graph",
            http_client=fake.session(),
            upload_budget_bytes=budget,
            upload_window=window,
            max_wait=120 / scale,
            batch_messages=20,
            batch_bytes=batch_bytes,
        )
        failed, checkpoint = 0, None
        before = sum(fake.http_requests.values())
        started = time.perf_counter()
        while True:
            try:
                result = engine.sync(spec, checkpoint)
                break
            except RetryableError as exc:
                failed += 1
                checkpoint = exc.checkpoint
                time.sleep(exc.retry_after or 0)
        seconds = time.perf_counter() - started
        requests = sum(fake.http_requests.values()) - before
        windows = total / budget
        run_rate = (total - budget) / seconds  # the first window's budget goes out at once
        print(
            json.dumps(
                {
                    "bench": "graph_copy",
                    "mode": "pacing",
                    "regime": regime,
                    "mailbox_mb": args.mailbox_mb,
                    "time_scale": scale,
                    "messages": result.checkpoint["items"],
                    "request_share_of_budget": round(batch_bytes / budget, 4),
                    "requests": requests,
                    "seconds": round(seconds, 2),
                    "budget_windows": round(windows, 2),
                    "pacing_efficiency": round(run_rate / (budget / window), 3),
                    "pacing_efficiency_best": round((windows - 1) / math.ceil(windows - 1), 3),
                    "window_fill": round(window_use(fake.upload_history[mailbox.user_id], budget, window), 3),
                    "failed_attempts": failed,
                    "over_budget_refusals": fake.upload_over_budget,
                    "peak_window_bytes": fake.upload_peak[mailbox.user_id],
                    "budget_bytes": budget,
                    "loadavg": [round(x, 2) for x in os.getloadavg()],
                }
            ),
            flush=True,
        )
    finally:
        fake.stop()
        source.stop()


if __name__ == "__main__":
    raise SystemExit(main())
