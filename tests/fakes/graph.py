"""The fake Microsoft Graph's mailbox import side, beside the fake cloud in tests/fakes/microsoft.py (which it
extends, so tokens, users, licences and the rest behave the same):

- GET  /users/{id}/settings/exchange                          -> exchangeSettings (primaryMailboxId)
- GET  /admin/exchange/mailboxes/{mailboxId}/folders[/{id}][/childFolders]   mailboxFolder (well-known names
       work as ids: inbox, sentitems, deleteditems, drafts, junkemail, calendar, contacts, tasks, notes, ...)
- POST /admin/exchange/mailboxes/{mailboxId}/folders[/{id}/childFolders]      create a mailboxFolder {displayName,
       type}
- GET  /admin/exchange/mailboxes/{mailboxId}/folders/{id}/items               mailboxItem, with PR_SEARCH_KEY as a
       single-value extended property when $expand asks for it
- POST /admin/exchange/mailboxes/{mailboxId}/createImportSession              mailboxItemImportSession
       {importUrl, expirationDateTime}
- POST {importUrl} {"FolderId", "Mode": "create" | "update", "Data", "ItemId"?} -> {"itemId", "changeKey"}; 401 once
       the session has expired; 429 / 503 with Retry-After when a test says so
- DELETE /users/{id}/messages/{itemId}                        an imported item removed (the cutover delta, delete_policy copied)
- /users/{id}/mailboxSettings, .../mailFolders/inbox/messageRules, .../calendar/calendarPermissions: the mailbox's
  settings (tests/fakes/graph_settings.py)

    python -m tests.fakes.graph serve --port N --dump DIR [--user UPN] [--tls-dir DIR] [--client-secret S]

answers over TLS at https://127.0.0.1:N for Entra ID, Graph and the import URLs at once (a private CA and a
certificate it signs, made in --tls-dir: trust ca.pem), writes every imported item to DIR/<user>/<folder path>/<item id>.<class>.fts, and prints
the tenant, client id, secret, CA file and the graph:// target URL for manage.py copy_mailbox.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from tests.fakes import graph_settings
from tests.fakes.exchange_store import parse_fts
from tests.fakes.microsoft import (
    GRAPH,
    OUTLOOK,
    FakeCrash,
    FakeMicrosoft,
    RewritingSession,
    _graph_error,
    _handler_for,
)

IMPORT_WELL_KNOWN = {
    "inbox": ("Inbox", "IPF.Note"),
    "sentitems": ("Sent Items", "IPF.Note"),
    "deleteditems": ("Deleted Items", "IPF.Note"),
    "drafts": ("Drafts", "IPF.Note"),
    "junkemail": ("Junk Email", "IPF.Note"),
    "outbox": ("Outbox", "IPF.Note"),
    "archive": ("Archive", "IPF.Note"),
    "calendar": ("Calendar", "IPF.Appointment"),
    "contacts": ("Contacts", "IPF.Contact"),
    "tasks": ("Tasks", "IPF.Task"),
    "notes": ("Notes", "IPF.StickyNote"),
    "journal": ("Journal", "IPF.Journal"),
}
SEARCH_KEY_PROPERTY = "Binary 0x300B"
IMPORT_CONCURRENCY = 4


def _now_plus(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ImportedItem:
    id: str
    data: bytes
    change_key: str
    item_class: str
    search_key: bytes


@dataclass
class ImportFolder:
    id: str
    display_name: str
    parent_id: str
    type: str = "IPF.Note"
    well_known: str = ""
    items: dict[str, ImportedItem] = field(default_factory=dict)


@dataclass
class ImportMailbox:
    id: str
    upn: str
    folders: dict[str, ImportFolder] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # settings (tests/fakes/graph_settings.py)
    mailbox_settings: dict = field(default_factory=graph_settings.default_settings)
    rules: dict = field(default_factory=dict)  # id -> messageRule
    calendar_permissions: dict = field(default_factory=graph_settings.default_permissions)  # id -> permission

    def __post_init__(self):
        root = ImportFolder(
            "root-" + uuid.uuid4().hex[:12], "Top of Information Store", "", "IPF.Note", "msgfolderroot"
        )
        self.folders[root.id] = root
        for well_known, (name, klass) in IMPORT_WELL_KNOWN.items():
            folder = ImportFolder(f"{well_known}-{uuid.uuid4().hex[:12]}", name, root.id, klass, well_known)
            self.folders[folder.id] = folder

    def folder(self, ref: str) -> ImportFolder | None:
        return self.folders.get(ref) or next(
            (f for f in self.folders.values() if f.well_known and f.well_known == ref.lower()), None
        )

    @property
    def root(self) -> ImportFolder:
        return self.folder("msgfolderroot")

    def path(self, folder: ImportFolder) -> tuple[str, ...]:
        names = []
        while folder.parent_id:
            names.append(folder.display_name)
            folder = self.folders[folder.parent_id]
        return tuple(reversed(names))

    def by_path(self, *path: str) -> ImportFolder | None:
        folder = self.root
        for name in path:
            folder = next(
                (f for f in self.folders.values() if f.parent_id == folder.id and f.display_name == name),
                None,
            )
            if folder is None:
                return None
        return folder

    def items(self) -> list[tuple[ImportFolder, ImportedItem]]:
        return [(f, i) for f in self.folders.values() for i in f.items.values()]


class ImportSession(RewritingSession):
    """The fake's requests session; also 'crashes the worker' just before the n-th import POST is sent."""

    def request(self, method, url, *args, **kwargs):
        fake = self.fake
        if "importItem" in url and method.upper() == "POST" and fake.crash_at is not None:
            with fake._lock:
                fake.import_attempts += 1
                if fake.import_attempts >= fake.crash_at:
                    fake.crash_at = None
                    raise FakeCrash("the worker died here")
        return super().request(method, url, *args, **kwargs)


class FakeGraph(FakeMicrosoft):
    def __init__(self, *args, port: int = 0, dump: Path | None = None, tls_dir: Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ca_file: Path | None = None
        if port:
            self.server.shutdown()
            self.server.server_close()
            self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
            self.server.daemon_threads = True
            self.port = port
            self.base = f"http://127.0.0.1:{port}"
            if tls_dir is not None:
                self._serve_public(tls_dir)
            threading.Thread(target=self.server.serve_forever, name="fake-graph", daemon=True).start()
        self.dump = dump
        self.import_mailboxes: dict[str, ImportMailbox] = {}  # user id -> mailbox
        self.import_sessions: dict[str, tuple[str, float]] = {}  # token -> (mailbox id, expiry epoch)
        self.import_session_lifetime = 3600.0
        self.import_requests: Counter = Counter()  # what -> count (sessions, imports, expired, throttled)
        self._import_throttle: dict = {}
        self._import_active: Counter = Counter()
        self.import_max_concurrency: Counter = Counter()
        self.crash_at: int | None = None
        self.import_attempts = 0
        self.settings_requests: Counter = Counter()  # (method, first segment) -> count
        self.unknown_grantees: set[str] = (
            set()
        )  # calendar permissions for them are refused (not in the tenant)

    def _serve_public(self, tls_dir: Path) -> None:
        """Answer over TLS at https://127.0.0.1:PORT for Entra ID, Graph and the import URLs at once, as a
        process of its own that the engine reaches with the endpoint options authority_host, graph_url and
        ca_file (a private CA made here, ca.pem: the file to trust)."""
        import ssl

        from tests.fakes.tls import make_ca_and_certificate

        ca, cert, key = make_ca_and_certificate(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.ca_file = ca
        self.base = self.public_base = f"https://127.0.0.1:{self.port}"

    # --- knobs -----------------------------------------------------------------------------------------------

    def session(self):
        return ImportSession(self)

    def throttle_imports(
        self, *, every: int = 0, count: int = 0, status: int = 429, retry_after: str = "0.05"
    ):
        with self._lock:
            self._import_throttle = {
                "every": every,
                "count": count,
                "status": status,
                "ra": retry_after,
                "n": 0,
            }

    def crash_after(self, imports: int) -> None:
        """The client's session raises FakeCrash instead of sending the `imports`-th import POST from now."""
        with self._lock:
            self.crash_at, self.import_attempts = imports, 0

    def import_mailbox(self, upn: str) -> ImportMailbox:
        user = self.mailbox(upn)
        with self._lock:
            if user.user_id not in self.import_mailboxes:
                mailbox_id = f"MBX:{uuid.uuid4().hex[:8]}@{self.tenant_id[:8]}"
                self.import_mailboxes[user.user_id] = ImportMailbox(mailbox_id, user.upn)
            return self.import_mailboxes[user.user_id]

    def _by_mailbox_id(self, mailbox_id: str) -> ImportMailbox | None:
        return next((m for m in self.import_mailboxes.values() if m.id == mailbox_id), None)

    # --- Graph routes ------------------------------------------------------------------------------------------

    def _route(self, version, method, parts, query, headers, body):
        if parts[:3] == ["admin", "exchange", "mailboxes"] and len(parts) >= 4:
            mailbox = self._by_mailbox_id(parts[3])
            if mailbox is None:
                return 404, {}, _graph_error("ErrorInvalidMailbox", "The mailbox was not found.")
            with mailbox.lock:
                return self._admin_route(version, method, mailbox, parts[4:], query, body)
        if parts[0] == "users" and len(parts) >= 3:
            user = self.mailbox(parts[1])
            if user is not None and user.licensed:
                mailbox = self.import_mailbox(user.upn)
                with mailbox.lock:
                    answer = graph_settings.route(self, version, method, mailbox, parts[2:], body)
                if answer is not None:
                    return answer
            if (
                user is not None
                and user.licensed
                and parts[2:] == ["settings", "exchange"]
                and method == "GET"
            ):
                mailbox = self.import_mailbox(user.upn)
                return (
                    200,
                    {},
                    {
                        "@odata.context": f"https://{GRAPH}/{version}/$metadata#users('{user.user_id}')/settings/exchange",
                        "primaryMailboxId": mailbox.id,
                    },
                )
            if (
                user is not None
                and user.licensed
                and len(parts) == 4
                and parts[2] == "messages"
                and method == "DELETE"
            ):
                mailbox = self.import_mailboxes.get(user.user_id)
                for folder, item in mailbox.items() if mailbox else []:
                    if item.id == parts[3]:
                        with mailbox.lock:
                            del folder.items[item.id]
                        return 204, {}, None
        return super()._route(version, method, parts, query, headers, body)

    def _folder_json(self, mailbox: ImportMailbox, folder: ImportFolder) -> dict:
        return {
            "id": folder.id,
            "displayName": folder.display_name,
            "parentFolderId": folder.parent_id,
            "childFolderCount": sum(1 for f in mailbox.folders.values() if f.parent_id == folder.id),
            "totalItemCount": len(folder.items),
            "type": folder.type,
        }

    def _admin_route(self, version, method, mailbox: ImportMailbox, rest, query, body):
        if rest == ["createImportSession"] and method == "POST":
            token = secrets.token_urlsafe(24)
            with self._lock:
                self.import_sessions[token] = (mailbox.id, time.time() + self.import_session_lifetime)
                self.import_requests["sessions"] += 1
            return (
                201,
                {},
                {
                    "@odata.context": f"https://{GRAPH}/{version}/$metadata#microsoft.graph.mailboxItemImportSession",
                    # opaque to the client; the token rides in the path here (the fake's handler sees no query string)
                    "importUrl": f"https://{OUTLOOK}/api/gbeta/Mailboxes('{mailbox.id}')/importItem/{token}",
                    "expirationDateTime": _now_plus(self.import_session_lifetime),
                },
            )
        if not rest or rest[0] != "folders":
            return 400, {}, _graph_error("BadRequest", "Resource not found for the segment.")
        if len(rest) == 1:
            parent = mailbox.root
        else:
            parent = mailbox.folder(rest[1])
            if parent is None:
                return (
                    404,
                    {},
                    _graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
                )
        tail = rest[2:]
        if len(rest) == 2 and method == "GET":
            return 200, {}, self._folder_json(mailbox, parent)
        if (len(rest) == 1 or tail == ["childFolders"]) and method == "GET":
            children = [
                self._folder_json(mailbox, f) for f in mailbox.folders.values() if f.parent_id == parent.id
            ]
            return 200, {}, {"value": children}
        if (len(rest) == 1 or tail == ["childFolders"]) and method == "POST":
            data = json.loads(body or b"{}")
            name = (data.get("displayName") or "").strip()
            if not name:
                return 400, {}, _graph_error("ErrorInvalidRequest", "displayName is required.")
            if any(f.parent_id == parent.id and f.display_name == name for f in mailbox.folders.values()):
                return (
                    409,
                    {},
                    _graph_error("ErrorFolderExists", "A folder with the specified name already exists."),
                )
            folder = ImportFolder(uuid.uuid4().hex, name, parent.id, data.get("type") or "IPF.Note")
            mailbox.folders[folder.id] = folder
            return 201, {}, self._folder_json(mailbox, folder)
        if tail == ["items"] and method == "GET":
            expand = " ".join(query.get("$expand", []))
            value = []
            for item in parent.items.values():
                entry = {"id": item.id, "changeKey": item.change_key, "size": len(item.data)}
                if SEARCH_KEY_PROPERTY.lower() in expand.lower():
                    entry["singleValueExtendedProperties"] = [
                        {"id": SEARCH_KEY_PROPERTY, "value": base64.b64encode(item.search_key).decode()}
                    ]
                value.append(entry)
            return 200, {}, {"value": value}
        return 400, {}, _graph_error("BadRequest", "Unsupported request.")

    # --- the importUrl --------------------------------------------------------------------------------------------

    def upload(self, path: str, headers: dict, body: bytes):
        match = re.search(r"Mailboxes\('([^']+)'\)/importItem/([\w-]+)", path)
        if not match:
            return super().upload(path, headers, body)
        return self._import(match.group(1), match.group(2), body)

    def _import(self, mailbox_id: str, token: str, body: bytes):
        session = self.import_sessions.get(token)
        with self._lock:
            self._import_active[mailbox_id] += 1
            self.import_max_concurrency[mailbox_id] = max(
                self.import_max_concurrency[mailbox_id], self._import_active[mailbox_id]
            )
            over = self._import_active[mailbox_id] > IMPORT_CONCURRENCY
            t = self._import_throttle
            throttled = None
            if t:
                t["n"] += 1
                if (t["count"] and t["n"] <= t["count"]) or (t["every"] and t["n"] % t["every"] == 0):
                    throttled = (t["status"], t["ra"])
                elif t["count"] and not t["every"]:
                    self._import_throttle = {}
        try:
            if over:
                throttled = (429, "1")
            if throttled:
                with self._lock:
                    self.import_requests["throttled"] += 1
                status, retry_after = throttled
                code = "ApplicationThrottled" if status == 429 else "ServiceUnavailable"
                return status, {"Retry-After": retry_after}, _graph_error(code, "Too many requests.")
            if session is None or session[0] != mailbox_id or session[1] < time.time():
                with self._lock:
                    self.import_requests["expired"] += 1
                return 401, {}, _graph_error("InvalidAuthenticationToken", "The import session has expired.")
            mailbox = self._by_mailbox_id(mailbox_id)
            data = json.loads(body)
            with mailbox.lock:
                folder = mailbox.folder(data.get("FolderId", ""))
                if folder is None:
                    return 404, {}, _graph_error("ErrorItemNotFound", "The folder was not found.")
                raw = base64.b64decode(data.get("Data", ""))
                try:
                    item_class, search_key, _ = parse_fts(raw)
                except ValueError:
                    return 400, {}, _graph_error("ErrorInvalidRequest", "The data is not an exported item.")
                mode = data.get("Mode", "")
                if mode == "update":
                    current = next(
                        (f for f in mailbox.folders.values() if data.get("ItemId") in f.items), None
                    )
                    if current is None:
                        return 404, {}, _graph_error("ErrorItemNotFound", "The item to update was not found.")
                    del current.items[data["ItemId"]]
                    item_id = data["ItemId"]
                elif mode == "create":
                    item_id = "AAMk" + uuid.uuid4().hex
                else:
                    return 400, {}, _graph_error("ErrorInvalidRequest", "Mode must be create or update.")
                item = ImportedItem(item_id, raw, "CQAA" + uuid.uuid4().hex[:12], item_class, search_key)
                folder.items[item.id] = item
                with self._lock:
                    self.import_requests["imports"] += 1
                if self.dump:
                    self._write_dump(mailbox, folder, item)
            return 200, {}, {"itemId": item.id, "changeKey": item.change_key}
        finally:
            with self._lock:
                self._import_active[mailbox_id] -= 1

    def _write_dump(self, mailbox: ImportMailbox, folder: ImportFolder, item: ImportedItem) -> None:
        directory = self.dump.joinpath(mailbox.upn, *mailbox.path(folder))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{item.id}.{item.item_class}.fts").write_bytes(item.data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.graph", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="answer Graph (and the Entra token endpoint) on 127.0.0.1:PORT")
    serve.add_argument("--port", type=int, default=8444)
    serve.add_argument("--dump", type=Path, required=True, help="where imported items are written")
    serve.add_argument("--user", action="append", default=[], help="a licensed user (UPN); repeat for more")
    serve.add_argument("--latency-ms", type=float, default=0)
    serve.add_argument(
        "--tls-dir",
        type=Path,
        default=Path("var/fake-graph-tls"),
        help="where its private CA and certificate are written (ca.pem: the CA file to trust)",
    )
    serve.add_argument("--client-secret", default="", help="the app's secret (default: a new one, printed)")
    args = parser.parse_args(argv)
    fake = FakeGraph(
        port=args.port,
        dump=args.dump,
        tls_dir=args.tls_dir,
        tenant_id="00000000-0000-0000-0000-00000000fa4e",
        client_id="00000000-0000-0000-0000-0000000c11e7",
    )
    fake.client_secret = args.client_secret or fake.client_secret
    fake.latency = args.latency_ms / 1000
    for upn in args.user:
        fake.add_user(upn)
    host = f"127.0.0.1:{fake.port}"
    print(
        json.dumps(
            {
                "graph": fake.base,
                "tenant": fake.tenant_id,
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
                "users": args.user,
                "ca_file": str(fake.ca_file),
                # the target URL for manage.py copy_mailbox (the secret from COPY_TARGET_PASSWORD)
                "target": f"graph://{fake.client_id}@{fake.tenant_id}/?user={args.user[0] if args.user else ''}"
                f"&authority_host={host}&graph_url=https://{host}&ca_file={fake.ca_file}",
            }
        ),
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
