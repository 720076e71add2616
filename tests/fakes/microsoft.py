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
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import html
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

LOGIN = "login.microsoftonline.com"
GRAPH = "graph.microsoft.com"
OUTLOOK = "outlook.office.com"
HOSTS = (LOGIN, GRAPH, OUTLOOK)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
WELL_KNOWN = ("inbox", "sentitems", "deleteditems", "drafts", "junkemail", "archive")
WELL_KNOWN_NAMES = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "junkemail": "Junk Email",
    "archive": "Archive",
}
PR_MESSAGE_FLAGS = "Integer 0x0E07"
PR_MESSAGE_DELIVERY_TIME = "SystemTime 0x0E06"
PR_CLIENT_SUBMIT_TIME = "SystemTime 0x0039"
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAILBOX_CONCURRENCY = 4


class FakeCrash(Exception):
    """Raised in the client's session by fail_after(): the process 'dies' mid-copy."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _graph_error(code: str, message: str) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": _now(), "request-id": str(uuid.uuid4())},
        }
    }


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str
    well_known: str = ""
    messages: dict[str, dict] = field(default_factory=dict)

    def as_json(self, mailbox: Mailbox) -> dict:
        children = [f for f in mailbox.folders.values() if f.parent_id == self.id]
        return {
            "id": self.id,
            "displayName": self.display_name,
            "parentFolderId": self.parent_id,
            "childFolderCount": len(children),
            "unreadItemCount": sum(1 for m in self.messages.values() if not m["isRead"]),
            "totalItemCount": len(self.messages),
            "sizeInBytes": sum(m["_size"] for m in self.messages.values()),
            "isHidden": False,
        }


@dataclass
class Mailbox:
    user_id: str
    upn: str
    display_name: str
    purpose: str = "user"
    licensed: bool = True
    folders: dict[str, Folder] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        root = Folder(_id("root"), "Top of Information Store", "", "msgfolderroot")
        self.folders[root.id] = root
        for name in WELL_KNOWN:
            folder = Folder(_id(name), WELL_KNOWN_NAMES[name], root.id, name)
            self.folders[folder.id] = folder

    def folder(self, ref: str) -> Folder | None:
        ref_lower = ref.lower()
        for folder in self.folders.values():
            if folder.id == ref or (folder.well_known and folder.well_known == ref_lower):
                return folder
        return None

    @property
    def root(self) -> Folder:
        return self.folder("msgfolderroot")

    def message(self, message_id: str) -> tuple[Folder, dict] | tuple[None, None]:
        for folder in self.folders.values():
            if message_id in folder.messages:
                return folder, folder.messages[message_id]
        return None, None


def _id(hint: str = "") -> str:
    return "AAMk" + _b64url(hint.encode() + secrets.token_bytes(18))


@dataclass
class Person:
    """Someone who can sign in at the fake authority."""

    oid: str
    username: str
    name: str
    roles: list[str] = field(default_factory=list)
    extra_claims: dict = field(default_factory=dict)


class FakeMicrosoft:
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

    def throttle(self, *, every: int = 0, count: int = 0, status: int = 429, retry_after: str | None = "1"):
        """Answer `status` to the next `count` Graph calls, or to every `every`-th one (a storm)."""
        with self._lock:
            self._throttle = {
                "every": every,
                "count": count,
                "status": status,
                "retry_after": retry_after,
                "n": 0,
            }

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired now (the next Graph call gets 401)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0

    def fail_after(self, creates: int | None) -> None:
        """The client's session raises FakeCrash instead of sending the create after `creates` more."""
        self._fail_after = creates
        self._creates = 0

    def session(self) -> requests.Session:
        return RewritingSession(self)

    # --- what the engine tests read ------------------------------------------------------------------------

    def folder_by_path(self, upn: str, *path: str) -> Folder | None:
        mailbox = self.mailbox(upn)
        first = path[0]
        folder = mailbox.folder(first) or next(
            (
                f
                for f in mailbox.folders.values()
                if f.parent_id == mailbox.root.id and f.display_name == first
            ),
            None,
        )
        for name in path[1:]:
            if folder is None:
                return None
            folder = next(
                (f for f in mailbox.folders.values() if f.parent_id == folder.id and f.display_name == name),
                None,
            )
        return folder

    # --- tokens ------------------------------------------------------------------------------------------

    def _access_token(self) -> str:
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImZha2UifQ." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_lifetime
        return token

    def token_valid(self, header: str) -> bool:
        if not header.startswith("Bearer "):
            return False
        with self._lock:
            return self._tokens.get(header[7:], 0) > time.time()

    def id_token(self, person: Person, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "aud": self.client_id,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": person.name,
            "oid": person.oid,
            "preferred_username": person.username,
            "email": person.username,
            "sub": _b64url(hashlib.sha256(person.oid.encode()).digest()),
            "tid": self.tenant_id,
            "ver": "2.0",
            "uti": secrets.token_urlsafe(16),
            **person.extra_claims,
        }
        if person.roles:
            claims["roles"] = person.roles
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict:
        numbers = self.signing_key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": _b64url(numbers.e.to_bytes(3, "big")),
                    "issuer": self.issuer,
                }
            ]
        }

    def client_authenticated(self, form: dict) -> tuple[bool, str]:
        if form.get("client_id") != self.client_id:
            return (
                False,
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found.",
            )
        if "client_secret" in form:
            if form["client_secret"] == self.client_secret:
                return True, ""
            return False, "AADSTS7000215: Invalid client secret provided."
        if form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            assertion = form.get("client_assertion", "")
            for certificate in self.client_certificates:
                try:
                    jwt.decode(
                        assertion,
                        certificate.public_key(),
                        algorithms=["RS256", "PS256"],
                        audience=f"https://{LOGIN}/{self.tenant_id}/oauth2/v2.0/token",
                        options={"require": ["exp", "iss", "sub"]},
                    )
                    return True, ""
                except jwt.PyJWTError:
                    continue
            return (
                False,
                "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.",
            )
        return (
            False,
            "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )

    # --- throttling and concurrency -------------------------------------------------------------------------

    def enter(self, mailbox_key: str | None) -> tuple[int, str | None] | None:
        """Count a Graph request in; returns (status, retry_after) when it is to be throttled."""
        with self._lock:
            self.requests.append(("graph", mailbox_key or ""))
            if mailbox_key:
                self._active[mailbox_key] += 1
                self.max_concurrency[mailbox_key] = max(
                    self.max_concurrency[mailbox_key], self._active[mailbox_key]
                )
                if self._active[mailbox_key] > MAILBOX_CONCURRENCY:
                    self.over_limit += 1
                    return 429, "1"
            t = self._throttle
            if t:
                t["n"] += 1
                if (t["count"] and t["n"] <= t["count"]) or (t["every"] and t["n"] % t["every"] == 0):
                    return t["status"], t["retry_after"]
                if t["count"] and not t["every"] and t["n"] > t["count"]:
                    self._throttle = {}
        return None

    def leave(self, mailbox_key: str | None) -> None:
        if mailbox_key:
            with self._lock:
                self._active[mailbox_key] -= 1

    # --- Graph ---------------------------------------------------------------------------------------------

    def graph(self, method: str, path: str, query: dict, headers: dict, body: bytes, *, batched=False):
        """Route one Graph call: (status, headers, body bytes or JSON-able)."""
        version, _, rest = path.lstrip("/").partition("/")
        if version not in ("v1.0", "beta"):
            return 404, {}, _graph_error("BadRequest", f"Invalid version: {version}")
        if rest == "$batch" and method == "POST" and not batched:
            return self._batch(version, headers, body)
        parts = [p for p in rest.split("/") if p]
        mailbox_key = None
        if len(parts) >= 2 and parts[0] == "users":
            mailbox = self.mailbox(parts[1])
            mailbox_key = mailbox.user_id if mailbox else parts[1].lower()
        throttled = self.enter(mailbox_key)
        try:
            if self.op_time:
                time.sleep(self.op_time)
            if throttled:
                status, retry_after = throttled
                extra = {"Retry-After": retry_after} if retry_after else {}
                code = "ApplicationThrottled" if status == 429 else "ServiceUnavailable"
                return status, extra, _graph_error(code, "Application is over its MailboxConcurrency limit.")
            if not self.token_valid(headers.get("authorization", "")):
                return (
                    401,
                    {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
                    _graph_error(
                        "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
                    ),
                )
            return self._route(version, method, parts, query, headers, body)
        finally:
            self.leave(mailbox_key)

    def _batch(self, version: str, headers: dict, body: bytes):
        if not self.token_valid(headers.get("authorization", "")):
            return (
                401,
                {},
                _graph_error("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
            )
        requests_ = json.loads(body)["requests"]
        if len(requests_) > 20:
            return 400, {}, _graph_error("BadRequest", "Number of batch requests exceeds the limit of 20.")
        responses, status_by_id = [], {}
        # dependsOn chains run in order, one at a time; independent requests run "at once" (counted so)
        for item in requests_:
            depends = item.get("dependsOn") or []
            if any(status_by_id.get(d, 200) >= 400 for d in depends):
                status_by_id[item["id"]] = 424
                responses.append(
                    {"id": item["id"], "status": 424, "body": _graph_error("FailedDependency", "")}
                )
                continue
            sub_headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
            sub_headers["authorization"] = headers.get("authorization", "")
            sub_body = item.get("body")
            if sub_body is None:
                raw = b""
            elif isinstance(sub_body, str):
                raw = sub_body.encode()
            else:
                raw = json.dumps(sub_body).encode()
            url = urlsplit(item["url"])
            status, out_headers, out = self.graph(
                item["method"],
                f"/{version}/{url.path.lstrip('/')}",
                parse_qs(url.query),
                sub_headers,
                raw,
                batched=True,
            )
            status_by_id[item["id"]] = status
            responses.append({"id": item["id"], "status": status, "headers": out_headers, "body": out})
        return 200, {}, {"responses": responses}

    def _route(self, version, method, parts, query, headers, body):
        if parts[0] != "users" or len(parts) < 2:
            return 404, {}, _graph_error("BadRequest", "Resource not found for the segment.")
        mailbox = self.mailbox(parts[1])
        if mailbox is None:
            return (
                404,
                {},
                _graph_error(
                    "Request_ResourceNotFound",
                    f"Resource '{parts[1]}' does not exist or one of its queried reference-property objects are not present.",
                ),
            )
        rest = parts[2:]
        if not rest and method == "GET":
            return (
                200,
                {},
                {
                    "@odata.context": f"https://{GRAPH}/{version}/$metadata#users/$entity",
                    "id": mailbox.user_id,
                    "userPrincipalName": mailbox.upn,
                    "mail": mailbox.upn,
                    "displayName": mailbox.display_name,
                },
            )
        if not mailbox.licensed:
            return (
                404,
                {},
                _graph_error(
                    "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                ),
            )
        with mailbox.lock:
            return self._mailbox_route(version, method, mailbox, rest, query, headers, body)

    def _mailbox_route(self, version, method, mailbox: Mailbox, rest, query, headers, body):
        if rest == ["mailboxSettings"] and method == "GET":
            return (
                200,
                {},
                {
                    "archiveFolder": mailbox.folder("archive").id,
                    "timeZone": "GMT Standard Time",
                    "language": {"locale": "en-GB", "displayName": "English (United Kingdom)"},
                    "userPurpose": mailbox.purpose,
                    "dateFormat": "dd/MM/yyyy",
                    "timeFormat": "HH:mm",
                },
            )
        if rest[0] == "mailFolders":
            return self._folders(version, method, mailbox, rest[1:], query, headers, body)
        if rest[0] == "messages" and len(rest) >= 2:
            folder, message = mailbox.message(rest[1])
            if message is None:
                return (
                    404,
                    {},
                    _graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
                )
            if len(rest) == 2 and method == "PATCH":
                patch = json.loads(body)
                if "isRead" in patch:
                    message["isRead"] = bool(patch["isRead"])
                if "flag" in patch:
                    message["flag"] = {"flagStatus": patch["flag"].get("flagStatus", "notFlagged")}
                for prop in patch.get("singleValueExtendedProperties", []):
                    message["_props"][prop["id"].lower()] = prop["value"]
                if (
                    set(patch) - {"isRead", "singleValueExtendedProperties", "flag", "categories"}
                    and not message["isDraft"]
                ):
                    return (
                        400,
                        {},
                        _graph_error("ErrorInvalidRequest", "Only drafts can be updated this way."),
                    )
                return 200, {}, self._message_json(message, {})
            if len(rest) == 2 and method == "DELETE":
                del folder.messages[message["id"]]
                return 204, {}, None
            if rest[2:] == ["move"] and method == "POST":
                # message: move (v1.0): a copy in the destination folder with a new id, the original gone.
                destination = mailbox.folder(json.loads(body).get("destinationId", ""))
                if destination is None:
                    return 404, {}, _graph_error("ErrorItemNotFound", "The destination folder was not found.")
                del folder.messages[message["id"]]
                moved = {**message, "id": _id("m"), "parentFolderId": destination.id}
                destination.messages[moved["id"]] = moved
                return 201, {}, self._message_json(moved, {})
            if len(rest) == 2 and method == "GET":
                return 200, {}, self._message_json(message, query)
            if rest[2:] == ["attachments"] and method == "POST":
                attachment = json.loads(body)
                message["attachments"].append(attachment)
                message["_size"] += len(base64.b64decode(attachment.get("contentBytes", "")))
                return 201, {}, {"id": _id("att"), "name": attachment.get("name")}
            if rest[2:] == ["attachments", "createUploadSession"] and method == "POST":
                item = json.loads(body)["AttachmentItem"]
                session = _id("upload")
                self._uploads[session] = {
                    "mailbox": mailbox,
                    "message": message["id"],
                    "item": item,
                    "data": bytearray(),
                }
                return (
                    201,
                    {},
                    {
                        "@odata.context": f"https://{GRAPH}/{version}/$metadata#microsoft.graph.uploadSession",
                        "uploadUrl": f"https://{OUTLOOK}/api/v2.0/Users('{mailbox.user_id}')/Messages('{message['id']}')/AttachmentSessions('{session}')?authtoken={secrets.token_urlsafe(12)}",
                        "expirationDateTime": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                        "nextExpectedRanges": ["0-"],
                    },
                )
        return 400, {}, _graph_error("BadRequest", f"Unsupported request: {method} {'/'.join(rest)}")

    def upload(self, path: str, headers: dict, body: bytes):
        match = re.search(r"AttachmentSessions\('([^']+)'\)", path)
        session = self._uploads.get(match.group(1)) if match else None
        if session is None:
            return 404, {}, {"error": {"code": "ErrorItemNotFound", "message": "Upload session not found."}}
        if "authorization" in headers:
            # The documented rule: the upload URL carries its own token; an Authorization header fails.
            return (
                401,
                {},
                {"error": {"code": "InvalidAuthenticationToken", "message": "Do not send a token."}},
            )
        mailbox = session["mailbox"]
        self.enter(mailbox.user_id)
        try:
            rng = re.match(r"bytes (\d+)-(\d+)/(\d+)", headers.get("content-range", ""))
            start, end, total = (int(x) for x in rng.groups())
            if start != len(session["data"]) or end - start + 1 != len(body):
                return 416, {}, {"error": {"code": "InvalidRange", "message": "Unexpected range."}}
            session["data"] += body
            if len(session["data"]) < total:
                return (
                    200,
                    {},
                    {"expirationDateTime": _now(), "nextExpectedRanges": [f"{len(session['data'])}-"]},
                )
            with mailbox.lock:
                _, message = mailbox.message(session["message"])
                item = session["item"]
                message["attachments"].append(
                    {
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": item["name"],
                        "contentType": item.get("contentType", "application/octet-stream"),
                        "size": total,
                        "contentBytes": base64.b64encode(bytes(session["data"])).decode(),
                        "isInline": item.get("isInline", False),
                    }
                )
                message["_size"] += total
            return 201, {}, None
        finally:
            self.leave(mailbox.user_id)

    def _folders(self, version, method, mailbox: Mailbox, rest, query, headers, body):
        if not rest:  # top-level folders: the children of msgfolderroot
            parent = mailbox.root
            sub = []
        else:
            parent = mailbox.folder(rest[0])
            if parent is None:
                return (
                    404,
                    {},
                    _graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
                )
            sub = rest[1:]
            if not sub and method == "GET":
                return 200, {}, parent.as_json(mailbox)
        if (not rest or sub == ["childFolders"]) and method == "GET":
            children = [f.as_json(mailbox) for f in mailbox.folders.values() if f.parent_id == parent.id]
            name_filter = (query.get("$filter") or [""])[0]
            match = re.match(r"displayName eq '(.*)'$", name_filter)
            if match:
                wanted = match.group(1).replace("''", "'")
                children = [c for c in children if c["displayName"] == wanted]
            return (
                200,
                {},
                self._page(children, query, f"https://{GRAPH}/{version}/users/{mailbox.user_id}/mailFolders"),
            )
        if (not rest or sub == ["childFolders"]) and method == "POST":
            name = json.loads(body)["displayName"]
            if any(
                f.parent_id == parent.id and f.display_name.lower() == name.lower()
                for f in mailbox.folders.values()
            ):
                return (
                    409,
                    {},
                    _graph_error("ErrorFolderExists", "A folder with the specified name already exists."),
                )
            folder = Folder(_id("f"), name, parent.id)
            mailbox.folders[folder.id] = folder
            return 201, {}, folder.as_json(mailbox)
        if sub == ["messages"] and method == "POST":
            return self._create(mailbox, parent, json.loads(body))
        if sub == ["messages"] and method == "GET":
            messages = [self._message_json(m, query) for m in parent.messages.values()]
            return (
                200,
                {},
                self._page(
                    messages,
                    query,
                    f"https://{GRAPH}/{version}/users/{mailbox.user_id}/mailFolders/{parent.id}/messages",
                ),
            )
        if sub == ["importMime"] and method == "POST":
            if version != "beta":
                return 400, {}, _graph_error("BadRequest", "Resource not found for the segment 'importMime'.")
            if not headers.get("content-type", "").startswith("text/plain"):
                return 415, {}, _graph_error("UnsupportedMediaType", "Content-Type must be text/plain.")
            raw = base64.b64decode(body)
            refused = self._spend_upload(mailbox, len(raw))
            if refused is not None:
                return refused
            return self._import_mime(mailbox, parent, raw)
        return (
            400,
            {},
            _graph_error("BadRequest", f"Unsupported request: {method} mailFolders/{'/'.join(rest)}"),
        )

    def _page(self, items: list, query: dict, url: str) -> dict:
        top = int((query.get("$top") or ["10"])[0])
        skip = int((query.get("$skip") or ["0"])[0])
        page = {"value": items[skip : skip + top]}
        if skip + top < len(items):
            rest = {k: v[0] for k, v in query.items() if k not in ("$skip",)}
            page["@odata.nextLink"] = f"{url}?{urlencode({**rest, '$skip': skip + top})}"
        return page

    def limit_uploads(self, budget_bytes: int | None, window_seconds: float = 300.0) -> None:
        """Graph's per-mailbox upload limit (150 MB in 5 minutes), scaled down for a test: importMime bytes
        over the budget within the window are refused with 429 and a Retry-After, and counted in
        upload_over_budget; upload_peak is the most a mailbox had in one window."""
        self.upload_budget, self.upload_window = budget_bytes, window_seconds

    upload_budget: int | None = None
    upload_window = 300.0
    upload_over_budget = 0

    def _spend_upload(self, mailbox: Mailbox, size: int):
        if self.upload_budget is None:
            return None
        with self._lock:
            log = self._upload_log.setdefault(mailbox.user_id, [])
            peaks = self.upload_peak
            now = time.monotonic()
            log[:] = [(at, n) for at, n in log if at > now - self.upload_window]
            used = sum(n for _, n in log)
            if used + size > self.upload_budget:
                self.upload_over_budget += 1
                wait = max(1, int(log[0][0] + self.upload_window - now + 1)) if log else 1
                return (
                    429,
                    {"Retry-After": str(wait)},
                    _graph_error("ApplicationThrottled", "The mailbox's upload limit is reached."),
                )
            log.append((now, size))
            peaks[mailbox.user_id] = max(peaks[mailbox.user_id], used + size)
        return None

    def _count_create(self) -> None:
        self._creates += 1

    def _create(self, mailbox: Mailbox, folder: Folder, data: dict):
        props = {p["id"].lower(): p["value"] for p in data.get("singleValueExtendedProperties", [])}
        flags = props.get(PR_MESSAGE_FLAGS.lower())
        is_draft = flags is None or int(flags) & 8 != 0
        message = {
            "id": _id("m"),
            "subject": data.get("subject", ""),
            "isDraft": is_draft,
            "isRead": bool(data.get("isRead", int(flags or 0) & 1)),
            "receivedDateTime": props.get(PR_MESSAGE_DELIVERY_TIME.lower()) or _now(),
            "sentDateTime": props.get(PR_CLIENT_SUBMIT_TIME.lower()) or _now(),
            "internetMessageId": data.get("internetMessageId"),
            "from": data.get("from"),
            "toRecipients": data.get("toRecipients", []),
            "body": data.get("body", {}),
            "flag": data.get("flag", {"flagStatus": "notFlagged"}),
            "attachments": list(data.get("attachments", [])),
            "parentFolderId": folder.id,
            "_props": props,
            "_size": len(json.dumps(data)),
            "_mime": None,
        }
        folder.messages[message["id"]] = message
        return 201, {}, self._message_json(message, {})

    def _import_mime(self, mailbox: Mailbox, folder: Folder, raw: bytes):
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        date = parsed.get("Date")
        sent = (
            email.utils.parsedate_to_datetime(str(date)).astimezone(dt.UTC)
            if date
            else dt.datetime.now(dt.UTC)
        )
        message = {
            "id": _id("m"),
            "subject": str(parsed.get("Subject", "")),
            "isDraft": False,
            "isRead": False,
            "receivedDateTime": sent.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sentDateTime": sent.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "internetMessageId": str(parsed.get("Message-ID", "")) or None,
            "attachments": [],
            "parentFolderId": folder.id,
            "flag": {"flagStatus": "notFlagged"},
            "_props": {},
            "_size": len(raw),
            "_mime": raw,
        }
        folder.messages[message["id"]] = message
        return 201, {}, self._message_json(message, {})

    def _message_json(self, message: dict, query: dict) -> dict:
        out = {
            k: copy.deepcopy(v) for k, v in message.items() if not k.startswith("_") and k != "attachments"
        }
        out["hasAttachments"] = bool(message["attachments"])
        expand = (query.get("$expand") or [""])[0]
        match = re.search(r"singleValueExtendedProperties\(\$filter=id eq '([^']+)'\)", expand)
        if match:
            wanted = match.group(1).lower()
            if wanted in message["_props"]:
                out["singleValueExtendedProperties"] = [
                    {"id": match.group(1), "value": message["_props"][wanted]}
                ]
        select = (query.get("$select") or [""])[0]
        if select:
            keep = set(select.split(",")) | {"id", "singleValueExtendedProperties"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    # --- Entra ---------------------------------------------------------------------------------------------

    def login(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        with self._lock:
            self.requests.append(("login", path))
        parts = [p for p in path.split("/") if p]
        if parts == ["common", "discovery", "instance"]:
            # Instance discovery, as MSAL asks it for the aliases of an authority host.
            return (
                200,
                {},
                {
                    "tenant_discovery_endpoint": f"https://{LOGIN}/common/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": LOGIN,
                            "preferred_cache": "login.windows.net",
                            "aliases": [LOGIN, "login.windows.net", "login.microsoft.com", "sts.windows.net"],
                        }
                    ],
                },
            )
        if not parts or parts[0] != self.tenant_id:
            return (
                400,
                {},
                {
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{parts[0] if parts else ''}' not found.",
                },
            )
        rest = "/".join(parts[1:])
        if rest == "v2.0/.well-known/openid-configuration":
            base = f"https://{LOGIN}/{self.tenant_id}"
            return (
                200,
                {},
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": self.issuer,
                    "request_uri_parameter_supported": False,
                    "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "http_logout_supported": True,
                    "frontchannel_logout_supported": True,
                    "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "oid", "tid", "roles"],
                    "kerberos_endpoint": f"{base}/kerberos",
                    "tenant_region_scope": "EU",
                    "cloud_instance_name": "microsoftonline.com",
                    "cloud_graph_host_name": "graph.windows.net",
                    "msgraph_host": "graph.microsoft.com",
                    "rbac_url": "https://pas.windows.net",
                },
            )
        if rest == "discovery/v2.0/keys":
            return 200, {}, self.jwks()
        if rest == "oauth2/v2.0/authorize":
            return self._authorize(method, query, body)
        if rest == "oauth2/v2.0/token" and method == "POST":
            return self._token({k: v[0] for k, v in parse_qs(body.decode()).items()})
        if rest == "oauth2/v2.0/logout":
            target = (query.get("post_logout_redirect_uri") or [""])[0]
            page = f"<html><head><title>Signed out</title></head><body><h1>You signed out of your account</h1><a href='{html.escape(target)}'>Back</a></body></html>"
            return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
        return 404, {}, {"error": "not_found", "error_description": path}

    def _authorize(self, method: str, query: dict, body: bytes):
        params = {k: v[0] for k, v in query.items()}
        if method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            params = json.loads(base64.urlsafe_b64decode(form["request"]))
            person = self.people.get(form.get("oid", ""))
            if person is None:
                return 400, {"Content-Type": "text/html"}, b"<h1>Unknown account</h1>"
            code = secrets.token_urlsafe(24)
            self._codes[code] = {"person": person, "params": params}
            location = f"{params['redirect_uri']}?{urlencode({'code': code, 'state': params.get('state', ''), 'session_state': str(uuid.uuid4())})}"
            return 302, {"Location": location}, b""
        if params.get("client_id") != self.client_id:
            return 400, {"Content-Type": "text/html"}, b"<h1>AADSTS700016: Application not found</h1>"
        request = base64.urlsafe_b64encode(json.dumps(params).encode()).decode()
        buttons = "".join(
            f"<button type='submit' name='oid' value='{p.oid}'>{html.escape(p.username)}</button>"
            for p in self.people.values()
        )
        page = (
            "<html><head><title>Sign in to your account</title></head><body><h1>Pick an account</h1>"
            f"<form method='post'><input type='hidden' name='request' value='{request}'>{buttons}</form></body></html>"
        )
        return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()

    def _token(self, form: dict):
        ok, why = self.client_authenticated(form)
        if not ok:
            return 401, {}, {"error": "invalid_client", "error_description": why, "error_codes": [7000215]}
        grant = form.get("grant_type")
        with self._lock:
            self.tokens_issued[grant] += 1
        if grant == "client_credentials":
            if form.get("scope") != GRAPH_SCOPE:
                return (
                    400,
                    {},
                    {
                        "error": "invalid_scope",
                        "error_description": "AADSTS1002012: The provided value for scope is not valid.",
                    },
                )
            return (
                200,
                {},
                {
                    "token_type": "Bearer",
                    "expires_in": self.token_lifetime,
                    "ext_expires_in": self.token_lifetime,
                    "access_token": self._access_token(),
                },
            )
        if grant == "authorization_code":
            grant_data = self._codes.pop(form.get("code", ""), None)
            if grant_data is None:
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS70008: The provided authorization code or refresh token has expired.",
                    },
                )
            params = grant_data["params"]
            verifier = form.get("code_verifier", "")
            challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
            if params.get("code_challenge_method") != "S256" or challenge != params.get("code_challenge"):
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS501481: The Code_Verifier does not match the code_challenge.",
                    },
                )
            if form.get("redirect_uri") != params.get("redirect_uri"):
                return (
                    400,
                    {},
                    {
                        "error": "invalid_grant",
                        "error_description": "AADSTS50148: The redirect_uri does not match.",
                    },
                )
            person = grant_data["person"]
            client_info = _b64url(json.dumps({"uid": person.oid, "utid": self.tenant_id}).encode())
            return (
                200,
                {},
                {
                    "token_type": "Bearer",
                    "scope": "openid profile email User.Read",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": self._access_token(),
                    "refresh_token": secrets.token_urlsafe(32),
                    "id_token": self.id_token(person, params.get("nonce")),
                    "client_info": client_info,
                },
            )
        return 400, {}, {"error": "unsupported_grant_type", "error_description": grant}


class RewritingSession(requests.Session):
    """requests to login.microsoftonline.com, graph.microsoft.com and outlook.office.com go to the fake."""

    def __init__(self, fake: FakeMicrosoft):
        super().__init__()
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
