"""A fake Exchange 2013 at the HTTP level: SOAP over HTTP at /EWS/Exchange.asmx, answering the EWS operations the
exchange engine sends through exchangelib (GetFolder, SyncFolderHierarchy, SyncFolderItems, ExportItems, FindItem by
size, and the mailbox settings: GetUserOofSettings, GetInboxRules, GetUserConfiguration WorkHours, GetDelegate, the
calendar's PermissionSet; tests/fakes/exchange_settings.py), shaped like Microsoft's documented requests and
responses (docs/adr/014-exchange-engine.md).

    python -m tests.fakes.exchange serve --seed DIR --port N [--username svc --password pw]

Mailboxes are seeded from ordinary files (tests/fakes/exchange_store.py says the layout). Knobs a test turns:
`busy(count=, every=, back_off_ms=)` (ErrorServerBusy SOAP faults with a BackOffMilliseconds hint),
`refuse_impersonation(address)` (ErrorImpersonateUserDenied), `fail(operation, code)`, `latency`, an item's `corrupt` / `reported_size`
(a partial failure inside an ExportItems batch; an item over the size limit). What it observes: `requests`
(operation counts), `max_concurrency`.
"""

from __future__ import annotations

import argparse
import base64
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from tests.fakes import exchange_settings as settings
from tests.fakes.exchange_store import Folder, Item, Store, seed

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
PATH = "/EWS/Exchange.asmx"
TAG_BY_CLASS = {
    "IPM.Note": "Message",
    "IPM.Appointment": "CalendarItem",
    "IPM.Contact": "Contact",
    "IPM.Task": "Task",
}
FOLDER_TAG = {
    "IPF.Appointment": "CalendarFolder",
    "IPF.Contact": "ContactsFolder",
    "IPF.Task": "TasksFolder",
}


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}"><s:Header>'
        f'<h:ServerVersionInfo xmlns:h="{T}" MajorVersion="15" MinorVersion="0" MajorBuildNumber="1497" '
        'MinorBuildNumber="2" Version="Exchange2013_SP1"/></s:Header>'
        f'<s:Body xmlns:m="{M}" xmlns:t="{T}">{body}</s:Body></s:Envelope>'
    ).encode()


def _fault(code: str, message: str, back_off_ms: int | None = None) -> bytes:
    xml = ""
    if back_off_ms is not None:
        xml = f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></t:MessageXml>'
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{T}">a:{code}</faultcode><faultstring xml:lang="en-US">{escape(message)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode><e:Message xmlns:e="{E}">'
        f"{escape(message)}</e:Message>{xml}</detail></s:Fault></s:Body></s:Envelope>"
    ).encode()


def _error_message(operation: str, code: str, text: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"</m:{operation}ResponseMessage>"
    )


def _folder_xml(store: Store, folder: Folder, *, permissions: bool = False) -> str:
    tag = "SearchFolder" if folder.search else FOLDER_TAG.get(folder.folder_class, "Folder")
    permission_set = ""
    if permissions and folder.distinguished == "calendar":
        permission_set = settings.permission_set_xml(store)
    parent = f'<t:ParentFolderId Id="{folder.parent_id}" ChangeKey="AQAAAA=="/>' if folder.parent_id else ""
    children = sum(1 for f in store.folders.values() if f.parent_id == folder.id)
    return (
        f'<t:{tag}><t:FolderId Id="{folder.id}" ChangeKey="AQAAAA=="/>{parent}'
        f"<t:FolderClass>{folder.folder_class}</t:FolderClass><t:DisplayName>{escape(folder.name)}</t:DisplayName>"
        f"<t:TotalCount>{len(folder.items)}</t:TotalCount><t:ChildFolderCount>{children}</t:ChildFolderCount>"
        f"{permission_set}</t:{tag}>"
    )


def _item_xml(item: Item) -> str:
    tag = TAG_BY_CLASS.get(item.item_class, "Message")
    return (
        f'<t:{tag}><t:ItemId Id="{item.id}" ChangeKey="{item.change_key}"/>'
        f"<t:ItemClass>{item.item_class}</t:ItemClass><t:Subject>{escape(item.subject)}</t:Subject>"
        f'<t:Size>{item.size}</t:Size><t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x300b" '
        f'PropertyType="Binary"/><t:Value>{base64.b64encode(item.search_key).decode()}</t:Value>'
        f"</t:ExtendedProperty></t:{tag}>"
    )


class FakeExchange:
    def __init__(
        self,
        stores: dict[str, Store] | None = None,
        *,
        username="svc-migration",
        password="secret",  # noqa: S107 - a fake's service account
    ):
        self.stores: dict[str, Store] = stores or {}
        self.username, self.password = username, password
        self.refused: set[str] = set()  # mailboxes the service account may not impersonate
        self.faults: dict[str, tuple[str, int | None]] = {}  # operation -> (EWS response code, back-off ms)
        self.latency = 0.0
        self.requests: Counter = Counter()
        self.max_concurrency = 0
        self._active = 0
        self._busy: dict = {}
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # --- setup ---------------------------------------------------------------------------------------------

    def add_mailbox(self, address: str) -> Store:
        store = Store(address.lower())
        self.stores[store.address] = store
        return store

    def seed(self, directory: Path) -> None:
        self.stores.update(seed(directory))

    def busy(self, *, count: int = 0, every: int = 0, back_off_ms: int = 50) -> None:
        """The next `count` requests, or every `every`-th one (a storm), get ErrorServerBusy."""
        with self._lock:
            self._busy = {"count": count, "every": every, "back_off_ms": back_off_ms, "n": 0}

    def refuse_impersonation(self, address: str) -> None:
        self.refused.add(address.lower())

    def fail(self, operation: str, code: str, *, back_off_ms: int | None = None) -> None:
        """Every request of `operation` (GetInboxRules, GetUserOofSettingsRequest, ...) gets a SOAP fault with
        that response code (ErrorAccessDenied, ErrorServerBusy with a back-off, ...) until cleared."""
        self.faults[operation] = (code, back_off_ms)

    def start(self, port: int = 0) -> FakeExchange:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-exchange", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # --- requests ------------------------------------------------------------------------------------------

    def _throttled(self) -> int | None:
        with self._lock:
            b = self._busy
            if not b:
                return None
            b["n"] += 1
            if (b["count"] and b["n"] <= b["count"]) or (b["every"] and b["n"] % b["every"] == 0):
                return b["back_off_ms"]
            if b["count"] and not b["every"]:
                self._busy = {}
        return None

    def handle(self, authorization: str, body: bytes) -> tuple[int, bytes]:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if authorization != expected:
            return 401, b""
        try:
            root = ET.fromstring(body)  # noqa: S314 - a test fake on loopback, fed by our own client
        except ET.ParseError as exc:
            return 500, _fault("ErrorSchemaValidation", f"The request failed schema validation: {exc}")
        request = root.find(f"{{{S}}}Body")[0]
        operation = request.tag.split("}")[1]
        with self._lock:
            self.requests[operation] += 1
        back_off = self._throttled()
        if back_off is not None:
            return 500, _fault(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                back_off,
            )
        address = root.findtext(
            f".//{{{T}}}ExchangeImpersonation/{{{T}}}ConnectingSID/{{{T}}}PrimarySmtpAddress"
        )
        if not address:
            return 500, _fault(
                "ErrorImpersonationFailed", "Impersonation is required for this service account."
            )
        address = address.lower()
        if address in self.refused:
            return 500, _fault(
                "ErrorImpersonateUserDenied",
                "The account does not have permission to impersonate the requested user.",
            )
        store = self.stores.get(address)
        if store is None:
            return 500, _fault(
                "ErrorNonExistentMailbox", f"The SMTP address has no mailbox associated with it: {address}"
            )
        if operation in self.faults:
            code, back_off = self.faults[operation]
            return 500, _fault(code, f"The fake was told to answer {operation} with {code}.", back_off)
        handler = getattr(self, f"_{operation}", None)
        if handler is None:
            return 500, _fault("ErrorInvalidRequest", f"The fake does not answer {operation}.")
        with store.lock:
            return 200, _envelope(handler(store, request))

    def _folder_ref(self, store: Store, elem) -> Folder | None:
        distinguished = elem.find(f"{{{T}}}DistinguishedFolderId")
        if distinguished is not None:
            name = distinguished.get("Id")
            return next((f for f in store.folders.values() if f.distinguished == name), None)
        folder_id = elem.find(f"{{{T}}}FolderId")
        return store.folders.get(folder_id.get("Id")) if folder_id is not None else None

    def _GetFolder(self, store: Store, request) -> str:
        permissions = settings.wants_permissions(request)
        out = []
        for ref in request.find(f"{{{M}}}FolderIds"):
            wrapper = ET.Element("w")
            wrapper.append(ref)
            folder = self._folder_ref(store, wrapper)
            if folder is None:
                out.append(
                    _error_message(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
            else:
                out.append(
                    '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                    f"<m:Folders>{_folder_xml(store, folder, permissions=permissions)}</m:Folders>"
                    "</m:GetFolderResponseMessage>"
                )
        return f"<m:GetFolderResponse><m:ResponseMessages>{''.join(out)}</m:ResponseMessages></m:GetFolderResponse>"

    def _SyncFolderHierarchy(self, store: Store, request) -> str:
        top = self._folder_ref(store, request.find(f"{{{M}}}SyncFolderId"))
        if top is None:
            body = _error_message(
                "SyncFolderHierarchy", "ErrorFolderNotFound", "The specified folder could not be found."
            )
        else:
            below, frontier = [], [top.id]
            while frontier:
                children = [f for f in store.folders.values() if f.parent_id in frontier]
                below += children
                frontier = [f.id for f in children]
            creates = "".join(f"<t:Create>{_folder_xml(store, f)}</t:Create>" for f in below)
            body = (
                '<m:SyncFolderHierarchyResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                f"<m:SyncState>H{len(store.folders)}</m:SyncState><m:IncludesLastFolderInRange>true"
                f"</m:IncludesLastFolderInRange><m:Changes>{creates}</m:Changes></m:SyncFolderHierarchyResponseMessage>"
            )
        return f"<m:SyncFolderHierarchyResponse><m:ResponseMessages>{body}</m:ResponseMessages></m:SyncFolderHierarchyResponse>"

    def _SyncFolderItems(self, store: Store, request) -> str:
        folder = self._folder_ref(store, request.find(f"{{{M}}}SyncFolderId"))
        wrap = "<m:SyncFolderItemsResponse><m:ResponseMessages>{}</m:ResponseMessages></m:SyncFolderItemsResponse>"
        if folder is None:
            return wrap.format(
                _error_message(
                    "SyncFolderItems", "ErrorFolderNotFound", "The specified folder could not be found."
                )
            )
        state = request.findtext(f"{{{M}}}SyncState") or ""
        since = 0
        if state:
            try:
                folder_id, _, seq = base64.b64decode(state).decode().partition(":")
                since = int(seq)
            except (ValueError, UnicodeDecodeError):
                folder_id = ""
            if folder_id != folder.id:
                return wrap.format(
                    _error_message(
                        "SyncFolderItems", "ErrorInvalidSyncStateData", "Invalid synchronization state data."
                    )
                )
        limit = int(request.findtext(f"{{{M}}}MaxChangesReturned") or 100)
        changes, cutoff, last = store.changes(folder, since, limit)
        out = []
        for kind, item_id in changes:
            if kind == "delete":
                out.append(f'<t:Delete><t:ItemId Id="{item_id}" ChangeKey="AAAA"/></t:Delete>')
            else:
                tag = "Create" if kind == "create" else "Update"
                out.append(f"<t:{tag}>{_item_xml(folder.items[item_id])}</t:{tag}>")
        new_state = base64.b64encode(f"{folder.id}:{cutoff}".encode()).decode()
        return wrap.format(
            '<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f"<m:SyncState>{new_state}</m:SyncState><m:IncludesLastItemInRange>{'true' if last else 'false'}"
            f"</m:IncludesLastItemInRange><m:Changes>{''.join(out)}</m:Changes></m:SyncFolderItemsResponseMessage>"
        )

    def _ExportItems(self, store: Store, request) -> str:
        out = []
        for ref in request.find(f"{{{M}}}ItemIds"):
            try:
                _folder, item = store.find(ref.get("Id"))
            except KeyError:
                out.append(
                    _error_message(
                        "ExportItems", "ErrorItemNotFound", "The specified object was not found in the store."
                    )
                )
                continue
            if item.corrupt:
                out.append(
                    _error_message(
                        "ExportItems", "ErrorCorruptData", "The item is corrupt and cannot be exported."
                    )
                )
                continue
            data = base64.b64encode(item.payload).decode()
            out.append(
                '<m:ExportItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
                f'<m:ItemId Id="{item.id}" ChangeKey="{item.change_key}"/><m:Data>{data}</m:Data>'
                "</m:ExportItemsResponseMessage>"
            )
        return f"<m:ExportItemsResponse><m:ResponseMessages>{''.join(out)}</m:ResponseMessages></m:ExportItemsResponse>"

    # --- mailbox settings (tests/fakes/exchange_settings.py) -------------------------------------------------

    def _GetUserOofSettingsRequest(self, store: Store, request) -> str:
        return settings.oof_response(store)

    def _GetInboxRules(self, store: Store, request) -> str:
        return settings.rules_response(store)

    def _GetUserConfiguration(self, store: Store, request) -> str:
        return settings.user_configuration_response(store, request)

    def _GetDelegate(self, store: Store, request) -> str:
        return settings.delegate_response(store)

    def _FindItem(self, store: Store, request) -> str:
        return settings.find_items_response(store, request, _item_xml)


def _handler_for(fake: FakeExchange):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with fake._lock:
                fake._active += 1
                fake.max_concurrency = max(fake.max_concurrency, fake._active)
            try:
                if fake.latency:
                    time.sleep(fake.latency)
                if self.path.split("?")[0].lower() != PATH.lower():
                    status, payload = 404, b""
                else:
                    status, payload = fake.handle(self.headers.get("Authorization", ""), body)
            finally:
                with fake._lock:
                    fake._active -= 1
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="exchange"')
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.exchange", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="answer EWS on 127.0.0.1:PORT/EWS/Exchange.asmx")
    serve.add_argument(
        "--seed", type=Path, required=True, help="one directory per mailbox (see exchange_store)"
    )
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--username", default="svc-migration")
    serve.add_argument("--password", default="secret")
    serve.add_argument("--latency-ms", type=float, default=0)
    args = parser.parse_args(argv)
    fake = FakeExchange(username=args.username, password=args.password)
    fake.seed(args.seed)
    fake.latency = args.latency_ms / 1000
    fake.start(args.port)
    counts = {a: len(s.items()) for a, s in fake.stores.items()}
    print(f"fake Exchange 2013 at {fake.url}: {counts}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
