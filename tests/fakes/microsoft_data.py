"""The fake Microsoft cloud's shared pieces (tests/fakes/microsoft.py composes them): the hosts, Graph's
well-known folders and MAPI property tags, the documented error shape, and the state a test sets up and reads:
mailboxes with their folders and messages, and people who sign in."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
import uuid
from dataclasses import dataclass, field

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
    # Exchange Online service plans of the user's licences (licenseDetails); none when not licensed
    plans: tuple[str, ...] = ("EXCHANGE_S_ENTERPRISE",)
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
