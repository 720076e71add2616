"""What $batch and the 4 concurrent requests buy the graph engine, against a Graph that takes time to answer.

    python -m bench.graph_copy [--messages 1000] [--mb 40] [--latency-ms 40]
    python -m bench.graph_copy --mailbox-mb 1500 [--time-scale 100]

A private Dovecot (tests/engines/dovecot.py) holds one generated mailbox (bench.imap_copy's mix of folders,
flags and sizes); the fake Exchange Online (tests/fakes/microsoft.py) answers each Graph call after
`--latency-ms` per HTTP request (the round trip to Microsoft) plus `--op-ms` per operation (a $batch's
sub-requests each). The mailbox is copied twice into fresh users:
the engine as it is ($batch of up to 20 creates, 4 threads), and with one message per request
(`batch_messages=1`). Prints one JSON line: seconds, messages per second and HTTP requests per message for
both, the highest number of concurrent requests the fake saw for the mailbox (Graph's limit is 4), and
ratio = batched seconds / unbatched seconds. No Microsoft service is contacted.

With --mailbox-mb, the pacing figure instead: a mailbox of that size against Graph's upload budget (150 MB
in 5 minutes per mailbox), bytes and time both divided by --time-scale (the same arithmetic: 1500 MB is ten
budgets either way), the fake refusing what goes over the budget. Prints pacing_efficiency (the achieved
upload rate over the budget's rate, the first window's free budget discounted) and failed_attempts (the
syncs that ended in an error and had to be retried: pacing should need none).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.imap_copy import generate, seed_source
from migrations_app.engines import EndpointSpec, MailboxSpec, get_engine
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
    parser.add_argument("--time-scale", type=float, default=100)
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


def pacing(args) -> int:
    import os

    from migrations_app.engines import RetryableError

    budget = int(150 * 1024 * 1024 / args.time_scale)
    window = 300 / args.time_scale
    size = int(args.mailbox_mb * 1024 * 1024 / args.time_scale)
    source = start_dovecot("/", quota=False)
    fake = FakeMicrosoft()
    allow_fake_in_environment(fake.base)  # the engine reaches the fake through the outbound rules
    fake.limit_uploads(budget, window_seconds=window)
    try:
        user = source.new_user()
        client = mailgen.client(source, user, tls=False)
        count = 500  # messages: the size is what the budget counts
        messages = [mailgen.message(n, size=size // count) for n in range(count)]
        mailgen.append(client, "INBOX", [{"msg": m, "flags": []} for m in messages])
        client.logout()
        total = sum(len(m) for m in messages)
        upn = "paced@bench.onmicrosoft.com"
        fake.add_user(upn)
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
            max_wait=120 / args.time_scale,
            batch_messages=20,
            # A request's share of the budget: 2.5 MB of 150 MB in production (1/60); a tenth here, where
            # more, smaller requests would measure this machine's request overhead rather than the pacing.
            batch_bytes=max(budget // 10, 10_000),
        )
        failed, checkpoint = 0, None
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
        achieved = (total - budget) / seconds  # the first window's budget goes out at once
        print(
            json.dumps(
                {
                    "bench": "graph_copy",
                    "mode": "pacing",
                    "mailbox_mb": args.mailbox_mb,
                    "time_scale": args.time_scale,
                    "messages": result.checkpoint["items"],
                    "seconds": round(seconds, 2),
                    "budget_windows": round(total / budget, 2),
                    "pacing_efficiency": round(achieved / (budget / window), 3),
                    "failed_attempts": failed,
                    "over_budget_refusals": fake.upload_over_budget,
                    "loadavg": [round(x, 2) for x in os.getloadavg()],
                }
            )
        )
    finally:
        fake.stop()
        source.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
