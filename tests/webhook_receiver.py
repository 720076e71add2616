"""A real HTTP receiver for webhook tests: http.server on loopback in a thread, answering with the statuses
it is given (the last one repeats) and keeping every request it got."""

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int]
    requests: list[Received] = field(default_factory=list)
    url: str = ""


def start_receiver(statuses: list[int]) -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(statuses=list(statuses))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append(Received(dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
            answer = b'{"ok": true}' if status < 300 else b"receiver is down for maintenance"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/portal"
    return receiver, server


def allow_receiver(settings, url: str) -> None:
    """What the programme office would configure for a receiver on its own network: this host may use http,
    this port, and resolve to an internal (here loopback) address. Without it the portal refuses the URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    settings.OUTBOUND_ALLOWED_HTTP_HOSTS = [*settings.OUTBOUND_ALLOWED_HTTP_HOSTS, parts.hostname]
    settings.OUTBOUND_ALLOWED_PORTS = [*settings.OUTBOUND_ALLOWED_PORTS, f"{parts.hostname}:{parts.port}"]
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = [*settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS, parts.hostname]
