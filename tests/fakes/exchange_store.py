"""The fake Exchange 2013's mailboxes: folders and items seeded from ordinary files, with a change log per folder
that SyncFolderItems reads. No HTTP here (tests/fakes/exchange.py answers the SOAP).

Seed layout (any corpus can be dropped in):

    DIR/<primary smtp address>/<folder>/<sub folder>/...        files: .eml mail, .ics calendar items,
    DIR/<primary smtp address>/_archive/<folder>/...            .vcf contacts, .json tasks / notes / journal
                                                                ({"class": "IPM.Task", "subject": ...})
DIR/<primary smtp address>/_settings.json holds the mailbox's settings (tests/fakes/exchange_settings.py).
A folder holding a file named `.search` is a search folder (listed, never exported). A folder's class comes
from its well-known name (Calendar, Contacts, Tasks, Notes, Journal) or else from its first file's kind.

An item's exported payload stands in for Exchange's FastTransfer stream: opaque bytes (see fts()) ending in the
file's bytes, so a test can check that what reached the target is byte-identical.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

WELL_KNOWN = {
    "inbox": ("inbox", "IPF.Note"),
    "sent items": ("sentitems", "IPF.Note"),
    "deleted items": ("deleteditems", "IPF.Note"),
    "drafts": ("drafts", "IPF.Note"),
    "outbox": ("outbox", "IPF.Note"),
    "junk e-mail": ("junkemail", "IPF.Note"),
    "junk email": ("junkemail", "IPF.Note"),
    "calendar": ("calendar", "IPF.Appointment"),
    "contacts": ("contacts", "IPF.Contact"),
    "tasks": ("tasks", "IPF.Task"),
    "notes": ("notes", "IPF.StickyNote"),
    "journal": ("journal", "IPF.Journal"),
}
CLASS_BY_SUFFIX = {".eml": "IPM.Note", ".ics": "IPM.Appointment", ".vcf": "IPM.Contact"}
FOLDER_CLASS_BY_ITEM = {
    "IPM.Note": "IPF.Note",
    "IPM.Appointment": "IPF.Appointment",
    "IPM.Contact": "IPF.Contact",
    "IPM.Task": "IPF.Task",
    "IPM.StickyNote": "IPF.StickyNote",
    "IPM.Activity": "IPF.Journal",
}
_ids = itertools.count(1)


def fts(item_class: str, search_key: bytes, raw: bytes) -> bytes:
    """The fake's stand-in for a FastTransfer stream: opaque to the engine, but like the real one it carries the
    item's class and properties (here PR_SEARCH_KEY) so the fake target can list them after an import."""
    return b"FTS\0" + item_class.encode() + b"\0" + search_key.hex().encode() + b"\0" + raw


def parse_fts(payload: bytes) -> tuple[str, bytes, bytes]:
    """(item class, search key, raw) of a fake stream; ValueError for anything else."""
    magic, item_class, key, raw = payload.split(b"\0", 3)
    if magic != b"FTS":
        raise ValueError("not a FastTransfer stream")
    return item_class.decode(), bytes.fromhex(key.decode()), raw


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids):08d}" + hashlib.sha256(f"{prefix}{_ids}".encode()).hexdigest()[:24]


@dataclass
class Item:
    id: str
    item_class: str
    subject: str
    raw: bytes
    version: int = 1
    reported_size: int | None = None  # a test's "this item is 200 MB" without making one
    corrupt: bool = False  # ExportItems answers ErrorCorruptData for it
    search_key: bytes = b""  # PR_SEARCH_KEY: set when made, kept through changes and moves (as Exchange does)

    def __post_init__(self):
        self.search_key = self.search_key or hashlib.sha256(self.id.encode()).digest()[:16]

    @property
    def payload(self) -> bytes:
        return fts(self.item_class, self.search_key, self.raw)

    @property
    def size(self) -> int:
        return self.reported_size if self.reported_size is not None else len(self.payload)

    @property
    def change_key(self) -> str:
        return "CK" + hashlib.sha256(self.payload).hexdigest()[:16] + f"v{self.version}"


@dataclass
class Folder:
    id: str
    name: str
    parent_id: str
    folder_class: str = "IPF.Note"
    distinguished: str = ""
    search: bool = False
    items: dict[str, Item] = field(default_factory=dict)
    # the change log SyncFolderItems reads: (seq, kind, item id, change key at the time) with kind create,
    # update or delete
    log: list[tuple[int, str, str]] = field(default_factory=list)
    seq: int = 0

    def record(self, kind: str, item_id: str) -> None:
        self.seq += 1
        self.log.append((self.seq, kind, item_id))


@dataclass
class Store:
    """One mailbox (primary and archive hierarchies)."""

    address: str
    folders: dict[str, Folder] = field(default_factory=dict)
    root_id: str = ""
    archive_root_id: str = ""
    # automatic replies, rules, working hours, calendar permissions, delegates (tests/fakes/exchange_settings.py)
    settings: dict = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self):
        self.root_id = _id("R")
        self.folders[self.root_id] = Folder(self.root_id, "Top of Information Store", "", "IPF.Note")
        self.folders[self.root_id].distinguished = "msgfolderroot"

    def ensure_archive(self) -> str:
        if not self.archive_root_id:
            self.archive_root_id = _id("A")
            root = Folder(self.archive_root_id, "Top of Information Store", "", "IPF.Note")
            root.distinguished = "archivemsgfolderroot"
            self.folders[root.id] = root
        return self.archive_root_id

    # --- building ------------------------------------------------------------------------------------------

    def folder(
        self, *path: str, archive: bool = False, create: bool = True, folder_class: str = ""
    ) -> Folder:
        parent = self.ensure_archive() if archive else self.root_id
        found = None
        for depth, name in enumerate(path):
            found = next(
                (
                    f
                    for f in self.folders.values()
                    if f.parent_id == parent and f.name.lower() == name.lower()
                ),
                None,
            )
            if found is None:
                if not create:
                    raise KeyError("/".join(path))
                distinguished, klass = WELL_KNOWN.get(name.lower(), ("", "")) if depth == 0 else ("", "")
                if archive:
                    distinguished = ""
                found = Folder(_id("F"), name, parent, folder_class or klass or "IPF.Note", distinguished)
                self.folders[found.id] = found
            parent = found.id
        return found

    def add_item(self, folder: Folder, item_class: str, subject: str, raw: bytes) -> Item:
        with self.lock:
            item = Item(_id("I"), item_class, subject, raw)
            folder.items[item.id] = item
            folder.record("create", item.id)
            return item

    # --- changes a test makes between pre-stage and cutover ---------------------------------------------

    def change(self, item_id: str, raw: bytes) -> Item:
        with self.lock:
            folder, item = self.find(item_id)
            item.raw, item.version = raw, item.version + 1
            folder.record("update", item.id)
            return item

    def delete(self, item_id: str) -> None:
        with self.lock:
            folder, item = self.find(item_id)
            del folder.items[item.id]
            folder.record("delete", item.id)

    def move(self, item_id: str, target: Folder) -> Item:
        """Exchange gives a moved item a new id: a delete in one folder, a create in the other."""
        with self.lock:
            folder, item = self.find(item_id)
            del folder.items[item.id]
            folder.record("delete", item.id)
            moved = Item(
                _id("I"), item.item_class, item.subject, item.raw, item.version, search_key=item.search_key
            )
            target.items[moved.id] = moved
            target.record("create", moved.id)
            return moved

    def find(self, item_id: str) -> tuple[Folder, Item]:
        for folder in self.folders.values():
            if item_id in folder.items:
                return folder, folder.items[item_id]
        raise KeyError(item_id)

    def items(self) -> list[tuple[Folder, Item]]:
        return [(f, i) for f in self.folders.values() for i in f.items.values()]

    def path(self, folder: Folder) -> list[str]:
        names = []
        while folder.parent_id:
            names.append(folder.name)
            folder = self.folders[folder.parent_id]
        return names[::-1]

    # --- SyncFolderItems ----------------------------------------------------------------------------------

    def changes(self, folder: Folder, since: int, limit: int) -> tuple[list[tuple[str, str]], int, bool]:
        """(kind, item id) changes after `since`, at most `limit` items, the new state and whether that was
        the last of them. Collapsed per item like Exchange: created then deleted in the range is nothing."""
        with self.lock:
            pending = [entry for entry in folder.log if entry[0] > since]
            order: list[str] = []
            first: dict[str, str] = {}
            last: dict[str, str] = {}
            cutoff = since
            for seq, kind, item_id in pending:
                if item_id not in first:
                    if len(order) == limit:
                        break
                    order.append(item_id)
                    first[item_id] = kind
                last[item_id] = kind
                cutoff = seq
            out = []
            for item_id in order:
                if last[item_id] == "delete":
                    if first[item_id] != "create":
                        out.append(("delete", item_id))
                elif first[item_id] == "create":
                    out.append(("create", item_id))
                else:
                    out.append(("update", item_id))
            return out, cutoff, cutoff >= folder.seq


# --- seeding from files ------------------------------------------------------------------------------------


def _subject(path: Path, raw: bytes, item_class: str) -> str:
    text = raw.decode("utf-8", "replace")
    if path.suffix == ".eml":
        return str(message_from_bytes(raw, policy=default_policy).get("Subject", ""))
    key = {".ics": "SUMMARY:", ".vcf": "FN:"}.get(path.suffix)
    if key:
        for line in text.splitlines():
            if line.upper().startswith(key):
                return line[len(key) :].strip()
        return ""
    return str(json.loads(text).get("subject", ""))


def item_class_of(path: Path, raw: bytes) -> str | None:
    if path.suffix in CLASS_BY_SUFFIX:
        return CLASS_BY_SUFFIX[path.suffix]
    if path.suffix == ".json":
        return json.loads(raw).get("class", "IPM.Task")
    return None


def seed_store(store: Store, directory: Path, *, archive: bool = False) -> None:
    def walk(folder_dir: Path, path: tuple[str, ...]) -> None:
        files = sorted(p for p in folder_dir.iterdir() if p.is_file())
        classes = [item_class_of(p, p.read_bytes()) for p in files if p.name != ".search"]
        klass = FOLDER_CLASS_BY_ITEM.get(next((c for c in classes if c), ""), "")
        folder = store.folder(*path, archive=archive, folder_class=klass)
        if any(p.name == ".search" for p in files):
            folder.search = True
            return
        for p in files:
            raw = p.read_bytes()
            item_class = item_class_of(p, raw)
            if item_class:
                store.add_item(folder, item_class, _subject(p, raw, item_class), raw)
        for sub in sorted(p for p in folder_dir.iterdir() if p.is_dir()):
            walk(sub, (*path, sub.name))

    for top in sorted(p for p in directory.iterdir() if p.is_dir()):
        if top.name == "_archive" and not archive:
            store.ensure_archive()
            seed_store(store, top, archive=True)
            continue
        walk(top, (top.name,))


def seed(directory: Path) -> dict[str, Store]:
    """One Store per mailbox directory under `directory`."""
    stores = {}
    for mailbox_dir in sorted(p for p in Path(directory).iterdir() if p.is_dir()):
        store = Store(mailbox_dir.name.lower())
        seed_store(store, mailbox_dir)
        if (mailbox_dir / "_settings.json").is_file():
            store.settings = json.loads((mailbox_dir / "_settings.json").read_text())
        stores[store.address] = store
    return stores
