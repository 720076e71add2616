"""README's two fake servers, started as it says (on free ports, dumping into a temporary directory), joined by the
exchange engine: the seed corpus in tests/fakes/exchange_seed arrives in the fake Graph's dump, per folder, with
each item's class in the file name and its payload byte for byte."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests

from migrations_app.engines import EndpointSpec, MailboxSpec, get_engine
from migrations_app.outbound_transport import outbound_session
from tests.fakes.exchange_store import seed
from tests.fakes.microsoft import HOSTS
from tests.fakes.outbound import allow_fake
from tests.test_readme import readme_example

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ToFake(requests.Session):
    """Sends Microsoft's hosts to the fake Graph process, as its in-process twin does, through the outbound
    rules (the test allows the fake's loopback address as the programme office would)."""

    def __init__(self, base: str):
        super().__init__()
        outbound_session(self)
        self.base = base

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.hostname in HOSTS:
            url = f"{self.base}/{parts.hostname}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return super().request(method, url, *args, **kwargs)


def _start(line: str, ews_port: int, graph_port: int, dump: Path) -> subprocess.Popen:
    argv = shlex.split(line.rstrip("& "))
    argv[0] = sys.executable
    argv = [
        {"8443": str(ews_port), "8444": str(graph_port), "var/imported": str(dump)}.get(arg, arg)
        for arg in argv
    ]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_readme_fakes_serve_and_the_engine_joins_them(tmp_path, settings):
    lines = [line for line in readme_example("exchange-fakes").splitlines() if line.strip()]
    ews_port, graph_port, dump = _free_port(), _free_port(), tmp_path / "imported"
    allow_fake(settings, f"http://127.0.0.1:{ews_port}")
    allow_fake(settings, f"http://127.0.0.1:{graph_port}")
    processes = [_start(line, ews_port, graph_port, dump) for line in lines]
    try:
        banner = processes[0].stdout.readline()
        assert f"127.0.0.1:{ews_port}/EWS/Exchange.asmx" in banner, processes[0].stderr.read()
        graph = json.loads(processes[1].stdout.readline())
        spec = MailboxSpec(
            email="alice@trust.nhs.uk",
            source=EndpointSpec(
                "exchange",
                "127.0.0.1",
                ews_port,
                "plain",
                "svc-migration",
                "secret",
                options={"auth": "basic"},
            ),
            target=EndpointSpec(
                "graph", graph["tenant"], 0, "tls", graph["client_id"], graph["client_secret"]
            ),
            target_user=graph["users"][0],
        )
        engine = get_engine("exchange", http_client=ToFake(f"http://127.0.0.1:{graph_port}"), max_wait=20)

        result = engine.sync(spec)

        store = seed(ROOT / "tests/fakes/exchange_seed")["alice@trust.nhs.uk"]
        expected = sorted(
            ("/".join(store.path(f)), i.item_class, i.raw) for f, i in store.items() if not f.search
        )
        arrived = sorted(
            (
                str(path.parent.relative_to(dump / graph["users"][0])),
                path.name.split(".", 1)[1].removesuffix(".fts"),
                path.read_bytes().split(b"\0", 3)[3],  # the fake stream's content: the seed file's bytes
            )
            for path in dump.rglob("*.fts")
        )
        assert arrived == expected and result.items_copied == len(expected) == 13
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
