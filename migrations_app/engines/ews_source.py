"""The exchange engine's source reader: one Exchange 2013 mailbox over EWS, through exchangelib. Plain Python.

- One service account with ApplicationImpersonation (ExchangeImpersonation header per request), Basic or NTLM as
  the endpoint's options say, TLS with an optional private CA file; `plain` only for test systems.
- The folder tree from SyncFolderHierarchy under msgfolderroot (and archivemsgfolderroot when asked): every folder
  class; search folders are returned marked, for the caller to skip and list.
- Items by SyncFolderItems, one page at a time: the page's SyncState is the folder's incremental checkpoint, so
  a pre-stage and a cutover delta are the same call. Each item carries its PR_SEARCH_KEY (0x300B), which an
  import keeps, so the writer can recognise an item it imported before a crash.
- ExportItems in batches sized by count and bytes; a failure of one item inside a batch comes back in its place.
- ErrorServerBusy: the BackOffMilliseconds hint is honoured (waits add up to `max_wait`, then a RetryableError
  carrying the hint, so the orchestrator retries later instead of hammering a busy CAS).

docs/adr/014-exchange-engine.md records the EWS calls, permissions and limits.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from migrations_app.engines.base import (
    AUTH_FAILED,
    SERVER_BUSY,
    EndpointSpec,
    EngineError,
    PermanentError,
    RetryableError,
)
from migrations_app.engines.ews_transport import (  # noqa: F401 - EWS_PATH, service_endpoint: used from here
    EWS_PATH,
    _ca_files,
    ews_error,
    install_exchange_adapter,
    service_endpoint,
)
from migrations_app.engines.pipeline.protocols import Folder, Item, Page, Payload

log = logging.getLogger(__name__)

# Archive folders go under one folder of the primary mailbox on the target (docs/adr/014-exchange-engine.md).
ARCHIVE_FOLDER = "In-Place Archive (Exchange 2013)"
SEARCH_KEY_TAG = 0x300B
# Item class -> the class name the mailbox page counts by.
CLASS_NAMES = (
    ("IPM.Appointment", "calendar"),
    ("IPM.Schedule", "calendar"),
    ("IPM.Contact", "contacts"),
    ("IPM.DistList", "contacts"),
    ("IPM.Task", "tasks"),
    ("IPM.StickyNote", "notes"),
    ("IPM.Activity", "journal"),
)
# EWS distinguished folder ids that Graph's mailboxFolder also knows by name.
WELL_KNOWN_FOLDERS = (
    "inbox",
    "sentitems",
    "deleteditems",
    "drafts",
    "junkemail",
    "outbox",
    "calendar",
    "contacts",
    "tasks",
    "notes",
    "journal",
)
FOLDER_CLASS_NAMES = {
    "IPF.Appointment": "calendar",
    "IPF.Contact": "contacts",
    "IPF.Task": "tasks",
    "IPF.StickyNote": "notes",
    "IPF.Journal": "journal",
}


def class_name(item_class: str) -> str:
    for prefix, name in CLASS_NAMES:
        if (item_class or "").startswith(prefix):
            return name
    return "mail"


@dataclass(frozen=True)
class SourceFolder:
    id: str
    path: tuple[str, ...]
    folder_class: str
    total_count: int
    search: bool = False
    archive: bool = False

    @property
    def key(self) -> str:
        return ("archive:" if self.archive else "") + "/".join(self.path)

    @property
    def kind(self) -> str:
        base = ".".join((self.folder_class or "IPF.Note").split(".")[:2])
        return FOLDER_CLASS_NAMES.get(base, "mail")


@dataclass(frozen=True)
class SourceItem:
    id: str
    change_key: str
    item_class: str
    subject: str
    size: int
    search_key: str = ""  # base64 PR_SEARCH_KEY

    @property
    def kind(self) -> str:
        return class_name(self.item_class)


@dataclass
class ChangePage:
    upserts: list[tuple[str, SourceItem]]  # ("create" | "update", item)
    deletes: list[str]  # source item ids
    sync_state: str
    last: bool


# --- exchangelib plumbing ------------------------------------------------------------------------------------

_registered = False
_register_lock = threading.Lock()


def _exchangelib():
    """Import exchangelib once and teach its item classes our one extended property."""
    global _registered
    import exchangelib
    from exchangelib.extended_properties import ExtendedProperty

    with _register_lock:
        if not _registered:

            class SearchKey(ExtendedProperty):
                property_tag = SEARCH_KEY_TAG
                property_type = "Binary"

            from exchangelib.items import (
                CalendarItem,
                Contact,
                DistributionList,
                Message,
                PostItem,
                Task,
            )

            for cls in (Message, CalendarItem, Contact, DistributionList, Task, PostItem):
                cls.register("migration_search_key", SearchKey)
            install_exchange_adapter()
            _registered = True
    return exchangelib


class EwsMailbox:
    """One mailbox through one service account. Thread-safe: exchangelib keeps a session pool per endpoint."""

    def __init__(self, endpoint: EndpointSpec, address: str, *, max_wait: float = 300.0):
        self.endpoint = endpoint
        self.address = address
        self.max_wait = max_wait
        self.stats = {"requests": 0, "busy": 0, "waited": 0.0}
        self._stats_lock = threading.Lock()
        ex = _exchangelib()
        options = endpoint.options
        if options.get("ca_file"):
            _ca_files[endpoint.host] = options["ca_file"]
        auth = {"basic": ex.BASIC, "ntlm": ex.NTLM}.get(str(options.get("auth", "ntlm")).lower())
        if auth is None:
            raise PermanentError(AUTH_FAILED, "source: options.auth must be 'ntlm' or 'basic'")
        if not endpoint.username or not endpoint.password:
            raise PermanentError(
                AUTH_FAILED, "source: the Exchange endpoint needs a service account and password"
            )
        config = ex.Configuration(
            service_endpoint=service_endpoint(endpoint),
            credentials=ex.Credentials(endpoint.username, endpoint.password),
            auth_type=auth,
            version=ex.Version(build=ex.Build(15, 0, 847, 32)),  # Exchange 2013 SP1: no version guessing
            retry_policy=ex.FailFast(),  # we honour the back-off ourselves (and give up after max_wait)
            max_connections=int(options.get("max_connections", 4)),  # the concurrency cap per endpoint
        )
        self.account = ex.Account(
            address, config=config, autodiscover=False, access_type=ex.IMPERSONATION, default_timezone=ex.UTC
        )

    def _call(self, fn):
        from exchangelib import errors

        waited = 0.0
        while True:
            with self._stats_lock:
                self.stats["requests"] += 1
            try:
                return fn()
            except errors.ErrorServerBusy as exc:
                wait = exc.back_off or 1.0
                with self._stats_lock:
                    self.stats["busy"] += 1
                if waited + wait > self.max_wait:
                    raise RetryableError(
                        SERVER_BUSY, f"source: Exchange is busy (ErrorServerBusy): {exc}", retry_after=wait
                    ) from exc
                log.info("Exchange asked us to back off %.2f s", wait)
                time.sleep(wait)
                waited += wait
                with self._stats_lock:
                    self.stats["waited"] += wait
            except EngineError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to our stable codes
                raise ews_error(exc) from exc

    def _root(self, archive: bool):
        return self._distinguished("archivemsgfolderroot" if archive else "msgfolderroot")

    def _distinguished(self, name: str):
        from exchangelib.folders import Root
        from exchangelib.properties import DistinguishedFolderId, Mailbox

        return Root(
            _distinguished_id=DistinguishedFolderId(id=name, mailbox=Mailbox(email_address=self.address)),
            account=self.account,
        )

    def check(self, *, archive: bool = False) -> bool:
        """Reachable, credentials good, impersonation granted, mailbox there (one GetFolder). With archive=True:
        whether the mailbox has an archive (False when Exchange says ErrorFolderNotFound)."""
        from exchangelib.errors import ErrorFolderNotFound
        from exchangelib.services import GetFolder

        root = self._root(archive)

        def get():
            for result in GetFolder(account=self.account).call(
                folders=[root], additional_fields=[], shape="IdOnly"
            ):
                if archive and isinstance(result, ErrorFolderNotFound):
                    return False
                if isinstance(result, Exception):
                    raise result
            return True

        return self._call(get)

    def well_known(self) -> dict[str, str]:
        """folder id -> Graph's well-known name, for the distinguished folders the mailbox has (one GetFolder):
        a localised store ("Posteingang") maps to the target's inbox all the same."""
        from exchangelib.services import GetFolder

        roots = [self._distinguished(name) for name in WELL_KNOWN_FOLDERS]

        def get():
            return list(
                GetFolder(account=self.account).call(folders=roots, additional_fields=[], shape="IdOnly")
            )

        out = {}
        for name, result in zip(WELL_KNOWN_FOLDERS, self._call(get), strict=False):
            if not isinstance(result, Exception):
                out[result.id] = name
        return out

    def folders(self, *, archive: bool = False) -> list[SourceFolder]:
        from exchangelib.services import SyncFolderHierarchy

        class Hierarchy(SyncFolderHierarchy):
            """Keeps each folder's element tag: a SearchFolder is told apart by it alone."""

            def _elem_to_obj(self, elem):
                tag = elem[0].tag.rsplit("}", 1)[-1] if len(elem) else ""  # parsing clears the element
                change, folder = super()._elem_to_obj(elem)
                return change, folder, tag

        if archive and not self.check(archive=True):
            return []  # no archive mailbox
        root = self._root(archive)

        def sync():
            return list(
                Hierarchy(account=self.account).call(
                    folder=root, shape="AllProperties", additional_fields=None, sync_state=None
                )
            )

        changes = self._call(sync)
        raw = {}
        for change, folder, tag in changes:
            if change == "delete" or isinstance(folder, Exception):
                continue
            parent = folder.parent_folder_id.id if folder.parent_folder_id else ""
            raw[folder.id] = (
                parent,
                folder.name or "",
                folder.folder_class or "IPF.Note",
                folder.total_count,
                tag,
            )

        def path(folder_id: str) -> tuple[str, ...]:
            names = []
            while folder_id in raw:
                parent, name, *_ = raw[folder_id]
                names.append(name)
                folder_id = parent
            return tuple(reversed(names))

        out = []
        for folder_id, (_parent, _name, folder_class, total, tag) in raw.items():
            out.append(
                SourceFolder(
                    folder_id,
                    path(folder_id),
                    folder_class,
                    int(total or 0),
                    search=tag == "SearchFolder",
                    archive=archive,
                )
            )
        return sorted(out, key=lambda f: (len(f.path), f.path))

    def changes(self, folder_id: str, sync_state: str | None, *, page_size: int = 100) -> ChangePage:
        from exchangelib.fields import FieldPath
        from exchangelib.items import Item
        from exchangelib.properties import FolderId
        from exchangelib.services import SyncFolderItems

        fields = [
            FieldPath(field=Item.get_field_by_fieldname(name)) for name in ("item_class", "subject", "size")
        ]
        from exchangelib.items import Message

        fields.append(FieldPath(field=Message.get_field_by_fieldname("migration_search_key")))

        def page():
            service = SyncFolderItems(account=self.account)
            results = list(
                service.call(
                    folder=FolderId(id=folder_id),
                    shape="IdOnly",
                    additional_fields=fields,
                    sync_state=sync_state or None,
                    ignore=None,
                    max_changes_returned=page_size,
                    sync_scope="NormalItems",
                )
            )
            return results, service.sync_state, service.includes_last_item_in_range

        results, state, last = self._call(page)
        upserts, deletes = [], []
        for change, obj in results:
            if isinstance(obj, Exception):
                raise ews_error(obj)
            if change == "delete":
                deletes.append(obj.id)
            elif change in ("create", "update"):
                key = getattr(obj, "migration_search_key", None)
                upserts.append(
                    (
                        change,
                        SourceItem(
                            obj.id,
                            obj.changekey,
                            obj.item_class or "IPM.Note",
                            obj.subject or "",
                            int(obj.size or 0),
                            base64.b64encode(key).decode() if key else "",
                        ),
                    )
                )
            # read_flag_change: the read state travels inside the exported stream at the next update
        return ChangePage(upserts, deletes, state, bool(last))

    def export(self, items: list[SourceItem]) -> list[bytes | EngineError]:
        """One ExportItems call: the FastTransfer stream of each item, or its own error in its place."""
        from exchangelib.properties import ItemId
        from exchangelib.services import ExportItems

        def call():
            return list(
                ExportItems(account=self.account).call(
                    items=[ItemId(id=i.id, changekey=i.change_key) for i in items]
                )
            )

        out: list[Any] = []
        for result in self._call(call):
            if isinstance(result, Exception):
                out.append(ews_error(result))
            else:
                out.append(base64.b64decode(result))
        return out


# --- the pipeline's SourceReader -----------------------------------------------------------------------------


class ExportFailed(Payload):
    """An item ExportItems could not give (ErrorCorruptData and the like): the writer lists it as skipped."""

    def __init__(self, reason: str):
        super().__init__(b"")
        self.reason = reason


class EwsReader:
    """engines.pipeline's SourceReader over one Exchange 2013 mailbox. Clones share the EwsMailbox (exchangelib's
    account and session pool are thread-safe) and what open() learnt (the folders and well-known folder ids).

    Folder.key is the EWS folder id; Folder.role the Graph well-known name of a distinguished folder (inbox,
    calendar, contacts, tasks, notes, ...); the cursor is the SyncFolderItems sync state; an item's key is
    "sk:" + its PR_SEARCH_KEY, which the import keeps, so the writer can index the target by it."""

    def __init__(
        self, endpoint: EndpointSpec, address: str, *, max_wait: float, page_size: int = 100, shared=None
    ):
        self.endpoint, self.address, self.max_wait, self.page_size = endpoint, address, max_wait, page_size
        self.shared = shared if shared is not None else {"lock": threading.Lock()}

    @property
    def mailbox(self) -> EwsMailbox:
        return self.shared["mailbox"]

    def open(self) -> None:
        with self.shared["lock"]:
            if "mailbox" in self.shared:
                return
            mailbox = EwsMailbox(self.endpoint, self.address, max_wait=self.max_wait)
            mailbox.check()
            self.shared["well_known"] = mailbox.well_known()
            self.shared["mailbox"] = mailbox

    def close(self) -> None:
        pass  # exchangelib's sessions belong to the endpoint's protocol, kept for the next mailbox

    def clone(self) -> EwsReader:
        return EwsReader(
            self.endpoint, self.address, max_wait=self.max_wait, page_size=self.page_size, shared=self.shared
        )

    def source_folders(self) -> list[SourceFolder]:
        """Every folder, search folders included (the engine lists those as skipped), archive when asked."""
        with self.shared["lock"]:
            if "folders" not in self.shared:
                folders = self.mailbox.folders()
                if self.endpoint.options.get("include_archive"):
                    folders += self.mailbox.folders(archive=True)
                self.shared["folders"] = folders
            return self.shared["folders"]

    def folders(self) -> list[Folder]:
        well_known = self.shared["well_known"]
        out = []
        for folder in self.source_folders():
            if folder.search:
                continue
            role = "" if folder.archive else well_known.get(folder.id, "")
            path = (ARCHIVE_FOLDER, *folder.path) if folder.archive else folder.path
            out.append(Folder(folder.id, path, role=role, folder_class=folder.folder_class, label=folder.key))
        inbox_first = sorted(out, key=lambda f: (f.role != "inbox", len(f.path), f.path))
        return inbox_first

    def source_folder(self, folder: Folder) -> SourceFolder:
        return next(f for f in self.source_folders() if f.id == folder.key)

    def generation(self, folder: Folder) -> dict:
        return {}  # an EWS folder id never names another folder: a recreated folder is a new key

    def changes(self, folder: Folder, cursor: Any) -> Iterator[Page]:
        while True:
            page = self.mailbox.changes(folder.key, cursor, page_size=self.page_size)
            items = [_pipeline_item(item) for _change, item in page.upserts]
            yield Page(items, page.sync_state, last=page.last, deleted=list(page.deletes))
            if page.last:
                return
            cursor = page.sync_state

    def keys(self, folder: Folder, items: list[Item]) -> None:
        pass  # listed with every item (PR_SEARCH_KEY comes with SyncFolderItems)

    def fetch(
        self, folder: Folder, items: list[Item], large_item_bytes: int
    ) -> Iterator[tuple[Item, Payload]]:
        sources = [
            SourceItem(i.id, i.extra_change_key, i.item_class, i.subject, i.size)
            for i in items  # type: ignore[attr-defined]
        ]
        for item, data in zip(items, self.mailbox.export(sources), strict=True):
            if isinstance(data, EngineError):
                if "ErrorItemNotFound" in str(data):
                    continue  # deleted since listing: nothing to copy
                yield item, ExportFailed(data.message or str(data))
            elif len(data) >= large_item_bytes:
                payload, spool = Payload.spooled()
                spool.write(data)
                payload.done_writing()
                yield item, payload
            else:
                yield item, Payload(data)

    def inventory(self, folder: Folder) -> list[Item]:
        """Every item in the folder now: a SyncFolderItems listing from the start (no state)."""
        items, cursor = [], None
        while True:
            page = self.mailbox.changes(folder.key, cursor, page_size=512)
            items += [_pipeline_item(item) for _change, item in page.upserts]
            if page.last:
                return items
            cursor = page.sync_state

    def totals(self, folder: Folder) -> tuple[int, int]:
        return self.source_folder(folder).total_count, 0


def _pipeline_item(item: SourceItem) -> Item:
    out = Item(
        item.id,
        item.size,
        key=f"sk:{item.search_key}" if item.search_key else f"id:{item.id}",
        subject=item.subject,
        item_class=item.item_class,
    )
    out.extra_change_key = item.change_key  # type: ignore[attr-defined] - ExportItems wants it back
    return out
