"""A fake Microsoft cloud on loopback, inside the test process: the Entra ID authority (OpenID configuration,
authorize, token, JWKS, logout) and Microsoft Graph (users, mailboxSettings, mailFolders, childFolders,
messages, beta importMime, attachments and upload sessions, $batch), shaped like the documented responses.

Nothing here reaches Microsoft. Code under test keeps the real addresses (https://login.microsoftonline.com,
https://graph.microsoft.com, https://outlook.office.com) and is given `fake.session()`, a requests Session
that sends those hosts to this server; MSAL takes it as its `http_client`. A browser gets the same through
Playwright's request routing (tests/identity/conftest.py).

Knobs a test turns: `users` / `add_user`, `unlicensed`, `throttle(...)` (429/503 with Retry-After),
`expire_tokens()` (the next Graph call gets 401), `fail_after(n)` (the n-th message create raises in the
client: a crash), and what it observes: `max_concurrency` per mailbox, `requests`, `tokens_issued`.

This module is the fake's server and its state; what it answers lives by concern: tests/fakes/entra.py (the
authority and its tokens), tests/fakes/graph_mail.py (the Graph mail API and its limits) and
tests/fakes/microsoft_data.py (hosts, folders, mailboxes, people). Everything importable from here before the
split still is.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from migrations_app.outbound_transport import outbound_session
from tests.fakes.entra import FakeEntra
from tests.fakes.graph_attachments import FakeGraphAttachments
from tests.fakes.graph_mail import FakeGraphMail

# The names tests and the other fakes import from here, wherever they live now.
from tests.fakes.microsoft_data import (  # noqa: F401
    GRAPH,
    GRAPH_SCOPE,
    HOSTS,
    LOGIN,
    MAILBOX_CONCURRENCY,
    MAX_REQUEST_BYTES,
    OUTLOOK,
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    WELL_KNOWN,
    WELL_KNOWN_NAMES,
    FakeCrash,
    Folder,
    Mailbox,
    Person,
    _b64url,
    _graph_error,
    _id,
    _now,
)


class FakeMicrosoft(FakeEntra, FakeGraphMail, FakeGraphAttachments):
    def __init__(self, tenant_id: str | None = None, client_id: str | None = None):
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = "fake-secret-" + secrets.token_urlsafe(8)
        self.client_certificates: list[x509.Certificate] = []
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "fake-key-1"
        self.people: dict[str, Person] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self._codes: dict[str, dict] = {}
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch)
        self.token_lifetime = 3599
        self.tokens_issued = Counter()  # grant type -> count
        self.requests: list[tuple[str, str]] = []  # every Graph call, $batch sub-requests included
        self.http_requests: Counter = Counter()  # (method, host, first path segments) per HTTP request
        self.latency = 0.0  # seconds per HTTP request (the round trip to Microsoft)
        self.op_time = 0.0  # seconds per Graph operation, $batch sub-requests each (Exchange's own work)
        self._lock = threading.Lock()
        self._active: Counter = Counter()
        self.max_concurrency: Counter = Counter()
        self.over_limit = 0
        self._throttle: dict = {}
        self._fail_after: int | None = None
        self._creates = 0
        self._uploads: dict = {}
        self._upload_log: dict[str, list] = {}
        # user id -> [(monotonic time, bytes)]: every upload the limit accepted (limit_uploads)
        self.upload_history: dict[str, list] = {}
        self.upload_peak: Counter = Counter()  # the most a mailbox uploaded within one window (limit_uploads)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-microsoft", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        for server in (self.server, self.tls_server):
            if server is not None:
                server.shutdown()
                server.server_close()

    tls_server = None
    # Set when the fake answers at one https address for all three hosts (FakeGraph.serve_public): requests are
    # routed by path and every Microsoft URL in an answer is rewritten to this base.
    public_base = ""

    def serve_tls(self) -> int:
        """Also answer over TLS (a self-signed certificate made here), by the Host header, for a browser
        whose resolver maps login.microsoftonline.com to this port. Returns the port."""
        if self.tls_server is None:
            import ssl
            import tempfile
            from pathlib import Path

            from tests.engines.dovecot import make_certificate

            directory = Path(tempfile.mkdtemp(prefix="fake-microsoft-"))
            cert, key = make_certificate(directory)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.tls_server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            self.tls_server.daemon_threads = True
            self.tls_server.socket = context.wrap_socket(self.tls_server.socket, server_side=True)
            threading.Thread(
                target=self.tls_server.serve_forever, name="fake-microsoft-tls", daemon=True
            ).start()
        return self.tls_server.server_address[1]

    # --- setup -------------------------------------------------------------------------------------------

    @property
    def authority(self) -> str:
        return f"https://{LOGIN}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        return f"https://{LOGIN}/{self.tenant_id}/v2.0"

    def add_person(
        self, username: str, name: str, roles: list[str], oid: str | None = None, **claims
    ) -> Person:
        person = Person(oid or str(uuid.uuid4()), username, name, list(roles), claims)
        self.people[person.oid] = person
        return person

    def add_user(self, upn: str, *, licensed: bool = True, purpose: str = "user") -> Mailbox:
        mailbox = Mailbox(str(uuid.uuid4()), upn.lower(), upn.split("@")[0], purpose, licensed)
        self.mailboxes[mailbox.user_id] = mailbox
        return mailbox

    def mailbox(self, ref: str) -> Mailbox | None:
        ref = ref.lower()
        return next((m for m in self.mailboxes.values() if ref in (m.user_id, m.upn)), None)

    def add_certificate(self, certificate: x509.Certificate) -> None:
        self.client_certificates.append(certificate)

    def session(self) -> requests.Session:
        return RewritingSession(self)


class RewritingSession(requests.Session):
    """requests to login.microsoftonline.com, graph.microsoft.com and outlook.office.com go to the fake.

    Built on the portal's outbound session, so what the code under test sends still passes the outbound rules
    at send time: the test allows the fake's loopback address and port as the programme office would
    (tests/fakes/outbound.py), and a URL the rules refuse is refused here too."""

    def __init__(self, fake: FakeMicrosoft):
        super().__init__()
        outbound_session(self)
        self.fake = fake

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.hostname in HOSTS:
            if parts.hostname == GRAPH and method.upper() == "POST" and self.fake._fail_after is not None:
                body = kwargs.get("data") or kwargs.get("json")
                if (
                    "/messages" in parts.path
                    or "importMime" in parts.path
                    or (
                        parts.path.endswith("$batch")
                        and body
                        and ("/messages" in str(body) or "importMime" in str(body))
                    )
                ):
                    if self.fake._creates >= self.fake._fail_after:
                        raise FakeCrash("the worker died here")
                    self.fake._count_create()
            url = f"{self.fake.base}/{parts.hostname}{parts.path}" + (
                f"?{parts.query}" if parts.query else ""
            )
        return super().request(method, url, *args, **kwargs)


def _handler_for(fake: FakeMicrosoft):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            host, _, path = parts.path.lstrip("/").partition("/")
            path = "/" + path
            if host not in HOSTS:  # a browser talking to us as the real host (serve_tls)
                host, path = (self.headers.get("Host") or "").split(":")[0], parts.path
                if host not in HOSTS and fake.public_base:  # one address standing in for the three hosts
                    host = _host_for_path(path)
            query = parse_qs(parts.query)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with fake._lock:
                fake.http_requests[(self.command, host, path.rsplit("/", 1)[-1])] += 1
            if fake.latency:
                time.sleep(fake.latency)
            if host == LOGIN:
                status, out_headers, out = fake.login(self.command, path, query, headers, body)
            elif host == GRAPH and len(body) > MAX_REQUEST_BYTES:  # Graph's 4 MB a request, $batch included
                status, out_headers, out = (
                    413,
                    {},
                    _graph_error("RequestEntityTooLarge", "The maximum request length supported is 4MB."),
                )
            elif host == GRAPH:
                status, out_headers, out = fake.graph(self.command, path, query, headers, body)
            elif host == OUTLOOK:
                status, out_headers, out = fake.upload(path, headers, body)
            else:
                status, out_headers, out = 404, {}, {"error": "unknown host"}
            if isinstance(out, bytes):
                payload = out
            elif out is None:
                payload = b""
            else:
                payload = json.dumps(out).encode()
                out_headers = {"Content-Type": "application/json; charset=utf-8", **out_headers}
                if (
                    fake.public_base
                ):  # every URL it hands out (token endpoint, importUrl, nextLink) comes here
                    for real in HOSTS:
                        payload = payload.replace(f"https://{real}".encode(), fake.public_base.encode())
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Handler


def _host_for_path(path: str) -> str:
    """Which Microsoft host a request to the one public address is for: Graph's versions, Outlook's upload and
    import URLs (/api/...), else Entra ID (/{tenant}/..., /common/...)."""
    first = path.lstrip("/").split("/", 1)[0]
    if first in ("v1.0", "beta"):
        return GRAPH
    if first == "api":
        return OUTLOOK
    return LOGIN


def messages_in(fake: FakeMicrosoft, upn: str, *path: str) -> list[dict]:
    folder = fake.folder_by_path(upn, *path)
    return list(folder.messages.values()) if folder else []
