"""The Notify client's transport (services/notifications/transport.py): one kept-alive connection per sending
thread that survives Notify closing it while idle, and the environment's proxy."""

import http.client
import time
from http.server import BaseHTTPRequestHandler

import pytest

from migrations_app.services.notifications import transport
from migrations_app.services.notifications.backends import SENT, NotifyBackend, Outgoing
from migrations_app.services.notifications.templates import Rendered
from migrations_app.services.notifications.transport import KeptAliveConnection
from tests.fakes.notify import API_KEY, TEMPLATE_ID, answer_json, serve_in_thread, start_fake_notify


def _message(n: int = 1) -> Outgoing:
    return Outgoing(n, f"owner{n}@example.nhs.uk", "reminder", Rendered("Your mailbox moves", "Dear owner"))


@pytest.fixture
def fake():
    fake, server = start_fake_notify()
    yield fake
    server.shutdown()
    server.server_close()


def test_a_connection_notify_closed_while_idle_is_replaced_not_failed(monkeypatch):
    """Notify's load balancers close idle keep-alive connections; the next request must not be lost to it."""
    opened = []

    class ClosesIdleConnections(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 0.2  # an idle connection is closed by the server after 0.2 s, without a word

        def setup(self):
            super().setup()
            opened.append(self.client_address)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = serve_in_thread(ClosesIdleConnections)
    monkeypatch.setattr(transport, "CHECK_AFTER_IDLE_SECONDS", 0.05)
    connection = KeptAliveConnection(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    url = f"http://127.0.0.1:{server.server_address[1]}/v2/notifications/email"
    assert connection.request("POST", url, body=b"{}", headers={})[0] == 201
    assert connection.request("POST", url, body=b"{}", headers={})[0] == 201
    assert len(opened) == 1  # kept alive between requests close together
    time.sleep(0.6)  # the server has closed it meanwhile
    assert connection.request("POST", url, body=b"{}", headers={})[0] == 201
    assert len(opened) == 2
    connection.close()
    server.shutdown()
    server.server_close()


def test_notify_is_reached_through_the_environments_proxy(fake, monkeypatch):
    forwarded = []

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            forwarded.append(self.path)  # a proxy is asked for the absolute URL
            body = self.rfile.read(int(self.headers["Content-Length"]))
            target = http.client.HTTPConnection(fake.url.split("//")[1], timeout=5)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
            target.request("POST", self.path.split(fake.url, 1)[1], body=body, headers=headers)
            answer = target.getresponse()
            answer_json(self, answer.status, answer.read())

        def log_message(self, *args):
            pass

    proxy = serve_in_thread(Proxy)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    sender = NotifyBackend(
        api_key=API_KEY, base_url=fake.url, template_ids={"default": TEMPLATE_ID}, threads=1
    )
    outcome = sender.send_one(_message())
    assert outcome.kind == SENT and outcome.notify_id
    assert forwarded == [f"{fake.url}/v2/notifications/email"]
    assert [m.email_address for m in fake.messages] == ["owner1@example.nhs.uk"]
    proxy.shutdown()
    proxy.server_close()


def test_one_connection_carries_a_threads_requests_and_errors_keep_notifys_words(fake):
    sender = NotifyBackend(
        api_key=API_KEY, base_url=fake.url, template_ids={"default": TEMPLATE_ID}, threads=1
    )
    assert [sender.send_one(_message(n)).kind for n in range(5)] == [SENT] * 5
    assert fake.connections == 1
    bad = Outgoing(9, "not-an-address", "reminder", Rendered("s", "b"))
    refused = sender.send_one(bad)
    assert (refused.kind, refused.error) == ("rejected", "email_address Not a valid email address")
    assert sender.send_one(_message(10)).kind == SENT and fake.connections == 1  # the 400 kept it open
