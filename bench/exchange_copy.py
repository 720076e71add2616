"""How fast does the exchange engine move a mixed mailbox, next to today's IMAP-to-Graph engine on its mail?

    python -m bench.exchange_copy [--items 5000] [--latency-ms 40]

One mailbox of `--items` items (80% mail, 10% calendar, 8% contacts, 2% tasks and notes) is written as files and
seeded into the fake Exchange 2013 (tests/fakes/exchange.py, SOAP over HTTP); the fake Graph (tests/fakes/graph.py)
takes the mailbox import. Both answer every HTTP request after `--latency-ms` (the round trip to a CAS and to
Microsoft). The exchange engine copies the whole mailbox (ExportItems batches of 20, one import POST per item,
four at once); then the same mailbox's mail only, as .eml in a private Dovecot, goes through the graph engine
(IMAP source, $batch of 20 JSON creates) into another user of the same fake Graph at the same latency.

Prints one JSON line: items, seconds, items_per_s, requests_per_item (EWS + Graph HTTP requests per item),
peak_rss_mb (the process's high-water mark after the exchange run), the IMAP-to-Graph figures for the mail, and
the load average (the machine is shared). Every item is checked on the target, byte for byte. No Microsoft
service is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from migrations_app.engines import EndpointSpec, MailboxSpec, get_engine
from tests.engines import mailgen
from tests.engines.dovecot import dovecot_binary, start_dovecot
from tests.engines.exchange_fixtures import ExchangeBox, mail_bytes
from tests.fakes.exchange import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.outbound import allow_fake_in_environment


def mix(items: int) -> dict[str, int]:
    calendar, contacts = items * 10 // 100, items * 8 // 100
    tasks = items * 1 // 100
    notes = items * 2 // 100 - tasks
    return {
        "mail": items - calendar - contacts - tasks - notes,
        "calendar": calendar,
        "contacts": contacts,
        "tasks": tasks,
        "notes": notes,
    }


def exchange_run(items: int, latency: float, directory: Path) -> dict:
    ews, graph = FakeExchange().start(), FakeGraph()
    allow_fake_in_environment(ews.url)  # the engine reaches the fakes through the outbound rules
    allow_fake_in_environment(graph.base)
    ews.latency = graph.latency = latency
    try:
        box = ExchangeBox(ews, graph, directory, search_folder=True, **mix(items))
        engine = get_engine("exchange", http_client=graph.session(), max_wait=60)
        started = time.perf_counter()
        result = engine.sync(box.spec())
        seconds = time.perf_counter() - started
        assert box.arrived() == box.expected(), "not every item arrived once, byte for byte"
        requests = sum(ews.requests.values()) + sum(graph.http_requests.values())
        return {
            "items": result.items_copied,
            "seconds": round(seconds, 2),
            "items_per_s": round(result.items_copied / seconds, 1),
            "requests_per_item": round(requests / max(1, result.items_copied), 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "max_import_concurrency": max(graph.import_max_concurrency.values()),
            "by_class": {k: v["copied"] for k, v in result.checkpoint["classes"].items() if v["copied"]},
        }
    finally:
        ews.stop()
        graph.stop()


def imap_graph_run(mail: int, latency: float) -> dict:
    source, graph = start_dovecot("/", quota=False), FakeGraph()
    allow_fake_in_environment(graph.base)  # the engine reaches the fake through the outbound rules
    graph.latency = latency
    try:
        user = source.new_user()
        client = mailgen.client(source, user, tls=False)
        mailgen.append(client, "INBOX", [{"msg": mail_bytes(n)} for n in range(mail)])
        client.logout()
        upn = "imap-graph@bench.onmicrosoft.com"
        graph.add_user(upn)
        spec = MailboxSpec(
            email=upn,
            source=EndpointSpec("imap", source.host, source.port, "plain", user, "secret"),
            target=EndpointSpec("graph", graph.tenant_id, 0, "tls", graph.client_id, graph.client_secret),
            target_user=upn,
        )
        engine = get_engine("graph", http_client=graph.session())
        started = time.perf_counter()
        result = engine.sync(spec)
        seconds = time.perf_counter() - started
        return {
            "items": result.items_copied,
            "seconds": round(seconds, 2),
            "items_per_s": round(result.items_copied / seconds, 1),
            "requests_per_item": round(sum(graph.http_requests.values()) / max(1, result.items_copied), 3),
        }
    finally:
        graph.stop()
        source.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=40, help="per HTTP request, both sides")
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as directory:
        exchange = exchange_run(args.items, latency, Path(directory))
    print(f"# exchange engine: {exchange}", file=sys.stderr)
    baseline = None
    if dovecot_binary() is not None:
        baseline = imap_graph_run(mix(args.items)["mail"], latency)
        print(f"# imap to graph, mail only: {baseline}", file=sys.stderr)
    else:
        print("# no dovecot: the IMAP-to-Graph comparison is left out", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "exchange_copy",
                "latency_ms": args.latency_ms,
                **{
                    k: exchange[k]
                    for k in ("items", "seconds", "items_per_s", "requests_per_item", "peak_rss_mb")
                },
                "max_import_concurrency": exchange["max_import_concurrency"],
                "by_class": exchange["by_class"],
                "imap_graph_mail": baseline,
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
