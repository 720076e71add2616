"""What a source reader and a target writer must do to be composed by the copy pipeline (pipeline/copy.py).

An engine is a reader and a writer: the IMAP engine is ImapReader + ImapWriter, the Graph engine
ImapReader + GraphWriter, and a new engine (EWS export, Graph mailbox import) is a new reader or writer
plugged into the same pipeline. The pipeline owns everything between them: folder planning, paging the
source's changes, batching by bytes and count, the worker pool, the checkpoint, dedupe against what the
target already holds, the cutover delta (flags, moves, deletions), fencing and progress. Readers and writers
only talk to their server. Plain Python: no Django here either.

Ids. A source item's `id` is a JSON scalar (an IMAP UID, an EWS item id) that names the item within its
folder for as long as the folder's `generation` stays the same. A target item's id is whatever the writer
needs to find it again (an IMAP UID, a Graph message id).

Keys. `Item.key` is the item's identity across the two sides: the reader computes it from what it can read
cheaply (IMAP: "m:<Message-ID>:<size>", or "h:<sha256 of the header block>:<size>" without a Message-ID), the
writer stores it on what it writes or can compute it back from the target (IMAP: the same formula on the
target's copy; Graph: our marker property), so `writer.index()` answers "which target items came from which
source key". Keys are a multiset: two different messages may share one.

Threads. The pipeline opens one reader and one writer on its own thread (listing, planning, the delta), then
asks each for `clone()` once per worker thread: a clone has its own connection and is used by one thread
only. Everything a clone shares with its parent (a token cache, an upload budget) must be thread-safe.

Errors. Raise engines.base errors: RetryableError (network, throttled, busy; `retry_after` when the server
said), PermanentError (credentials, missing mailbox, quota, protocol). A refusal about one item only is not an
error: return it as skipped (Written.skipped) and the rest of the batch carries on.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import hashlib
import io
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from migrations_app.engines.base import EndpointSpec, MailboxSpec, SkippedItem

# Flags are IMAP's names, as strings: the system flags a person sees, and keywords as they are.
SEEN, ANSWERED, FLAGGED, DRAFT = "\\Seen", "\\Answered", "\\Flagged", "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DRAFT})

# Well-known folder roles (Graph's well-known names); "" for an ordinary folder.
ROLES = ("inbox", "sentitems", "deleteditems", "drafts", "junkemail", "archive")


# --- folders and items --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """A source folder. `key` is what the checkpoint is filed under (IMAP: the folder's name; EWS: its id);
    `path` its display names from the top of the mailbox; `role` a well-known folder ("inbox", ...) or "".
    `folder_class` is Exchange's container class (IPF.Note for mail), for writers that create folders."""

    key: str
    path: tuple[str, ...]
    role: str = ""
    folder_class: str = "IPF.Note"
    subscribed: bool = True
    label: str = ""  # the source's own name for it, when that is not its path joined by "/"

    @property
    def name(self) -> str:
        """How people and reports name it (skipped items, verify): the source's own name."""
        return self.label or "/".join(self.path) or self.key


@dataclass
class Item:
    """One source item as listed (not its content). `size` in bytes as the source counts it; `flags` IMAP
    flag names; `date` when it was received (IMAP INTERNALDATE); `key` may be "" until the pipeline asks
    the reader for keys (reader.keys) — only when it has to match against the target."""

    id: Any
    size: int
    flags: frozenset[str] = frozenset()
    date: dt.datetime | None = None
    key: str = ""
    subject: str = ""
    item_class: str = "IPM.Note"


@dataclass
class Page:
    """Part of a folder's changes since a cursor. `items` are new or changed since the cursor, in the
    source's order; `deleted` the ids gone since the cursor, where the source says (EWS does; IMAP does not,
    the delta compares inventories instead); `cursor` is where to resume once every item of this page and
    of the pages before it is on the target; `last` says there is nothing after it (for now)."""

    items: list[Item]
    cursor: Any
    last: bool = True
    deleted: list[Any] = field(default_factory=list)


class Payload:
    """An item's content: `size` bytes, readable as a stream. Small ones are held in memory; large ones
    (over the pipeline's large_item_bytes, 16 MB by default) are spooled to a temporary file by the reader
    and must be streamed by the writer (`open()`), never read whole. `header()` is the MIME header block."""

    def __init__(self, data: bytes | None = None, *, spool: IO[bytes] | None = None, size: int | None = None):
        self._data = data
        self._spool = spool
        self.size = len(data) if data is not None else int(size or 0)

    @classmethod
    def spooled(cls, max_memory: int = 4 * 1024 * 1024) -> tuple[Payload, IO[bytes]]:
        """A payload to write into (then call `done_writing()`): memory up to max_memory, then disk."""
        spool = tempfile.SpooledTemporaryFile(max_size=max_memory)  # noqa: SIM115 - closed by close()
        payload = cls(spool=spool, size=0)
        return payload, spool

    def done_writing(self) -> None:
        assert self._spool is not None
        self.size = self._spool.tell()
        self._spool.seek(0)

    @property
    def streamed(self) -> bool:
        return self._spool is not None

    def open(self) -> IO[bytes]:
        """A binary stream from the start. For a spooled payload this is the spool itself, rewound."""
        if self._spool is not None:
            self._spool.seek(0)
            return self._spool
        return io.BytesIO(self._data or b"")

    def bytes(self) -> bytes:
        """The whole content. Only for payloads that are not streamed (the writer checks `streamed`)."""
        if self._spool is not None:
            raise ValueError("a streamed payload is never read whole: use open()")
        return self._data or b""

    def header(self, limit: int = 256 * 1024) -> bytes:
        """The header block with the blank line that ends it, as IMAP's BODY[HEADER] gives it."""
        if self._spool is None:
            head = (self._data or b"")[:limit]
        else:
            self._spool.seek(0)
            head = self._spool.read(limit)
            self._spool.seek(0)
        end = head.find(b"\r\n\r\n")
        return head[: end + 4] if end >= 0 else head

    def sha256(self) -> str:
        digest = hashlib.sha256()
        stream = self.open()
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
        if self._spool is not None:
            self._spool.seek(0)
        return digest.hexdigest()

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)


def message_id(header: bytes | None) -> str | None:
    """The Message-ID of a MIME header block, unfolded; None when there is none."""
    if not header:
        return None
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header)
    match = _MESSAGE_ID.search(unfolded)
    if not match or not match.group(1).strip():
        return None
    return match.group(1).strip().decode("utf-8", "replace")


def subject_of(header: bytes) -> str:
    """The decoded Subject of a MIME header block ("" when unreadable: a subject is for people to read, and
    a broken header must not stop the copy)."""
    try:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(header)
        return str(parsed.get("Subject", "") or "")
    except Exception:  # noqa: BLE001
        return ""


def item_key(header: bytes, size: int) -> str:
    """The shared key formula for MIME items: Message-ID + size, or a hash of the header block + size."""
    mid = message_id(header)
    if mid:
        return f"m:{mid}:{size}"
    return f"h:{hashlib.sha256(header).hexdigest()}:{size}"


# --- what the writer answers --------------------------------------------------------------------------------


@dataclass
class TargetFolder:
    """A target folder the writer has found or created for a source folder. `id` is the writer's handle
    (IMAP: the folder name; Graph: the folder id); `state` is the writer's part of the folder's checkpoint
    entry (IMAP: UIDVALIDITY and watermark; Graph: the item count it last knew to be ours), returned by
    open_folder and close_folder and handed back at the next pass; `unknown` is True when the target may
    hold copies the checkpoint does not know of (a crash after a write and before its checkpoint, a
    recreated folder), so the pipeline indexes it before copying (writer.index)."""

    id: Any
    name: str
    state: dict = field(default_factory=dict)
    unknown: bool = False
    extra: Any = None  # the writer's own notes (allowed keywords, ...), never saved


@dataclass
class Written:
    """The outcome of one item of a write: `target_id` when it is on the target (None when the writer cannot
    tell, as with an IMAP server without UIDPLUS), or `skipped` with the reason (too big, refused)."""

    item: Item
    target_id: Any = None
    skipped: SkippedItem | None = None
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.skipped is None


@dataclass
class TargetItem:
    """An item on the target as the delta sees it: its id, the source key it carries or matches, its flags,
    and whether the portal wrote it (only those are ever moved or deleted)."""

    id: Any
    key: str
    flags: frozenset[str] = frozenset()
    ours: bool = False
    subject: str = ""  # where the target gives it cheaply (verify names extra items by it)


# --- the protocols ------------------------------------------------------------------------------------------


@runtime_checkable
class SourceReader(Protocol):
    """Reads one mailbox. Built from the MailboxSpec by the engine; `open()` connects and logs in."""

    def open(self) -> None:
        """Connect and log in (raise PermanentError AUTH_FAILED, RetryableError NETWORK, ...)."""

    def close(self) -> None:
        """Log out; never raises."""

    def clone(self) -> SourceReader:
        """A new, unopened reader for the same mailbox, for one worker thread."""

    def folders(self) -> list[Folder]:
        """Every folder to copy, parents before children, INBOX first. Folders that hold nothing to copy
        (search folders) are left out; say so in `skipped()` if people should know."""

    def generation(self, folder: Folder) -> dict:
        """The folder's identity as a small dict saved in its checkpoint entry (IMAP: {"uidvalidity": n}).
        When it differs from the saved one, the folder was recreated: the saved cursor is dropped and the
        target indexed, so nothing arrives twice."""

    def changes(self, folder: Folder, cursor: Any) -> Iterator[Page]:
        """The folder's new (and, where the source says, changed and deleted) items since `cursor` (None: from
        the start), in pages of a few thousand at most. The pipeline pulls the next page only when its
        workers need more work, so a reader must not list a whole huge folder up front."""

    def keys(self, folder: Folder, items: list[Item]) -> None:
        """Fill in `key` and `subject` for each item (see module docstring). Called only when the target may
        already hold some of them, or for items about to be listed as skipped, so it may cost a round trip
        (IMAP: the Message-ID and Subject headers of each)."""

    def fetch(
        self, folder: Folder, items: list[Item], large_item_bytes: int
    ) -> Iterator[tuple[Item, Payload]]:
        """The content of each item still there (skip ones gone since listing), in any order. An item of
        `large_item_bytes` or more must come as a spooled Payload, fetched in parts, never whole in memory."""

    def inventory(self, folder: Folder) -> list[Item]:
        """Every item now in the folder with its id, size, flags and key (for the cutover delta and verify)."""

    def totals(self, folder: Folder) -> tuple[int, int]:
        """(items, bytes) in the folder now, for verify and preflight."""


@runtime_checkable
class TargetWriter(Protocol):
    """Writes one mailbox. Built from the MailboxSpec by the engine; `open()` connects and checks the target
    mailbox is there (PermanentError TARGET_MISSING when not)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def clone(self) -> TargetWriter:
        """A new, unopened writer for the same mailbox, for one worker thread (may share a token cache)."""

    def size_limit(self) -> int | None:
        """The largest item the target takes (bytes), or None: bigger items are skipped as TOO_BIG."""

    def open_folder(self, folder: Folder, saved: dict | None, *, create: bool = True) -> TargetFolder | None:
        """Find or create the target folder for a source folder (keeping the hierarchy and mapping the
        well-known roles); `saved` is the state close_folder returned at the previous pass (None at the
        first). Set `unknown` when the target may hold copies that state does not account for. With
        create=False (verify) a missing folder is None. Several source folders may map to one target
        folder (Graph: "Sent" and "Sent Items" both to sentitems): the same TargetFolder.name."""

    def index(self, target: TargetFolder) -> dict[str, list[Any]]:
        """Source key -> ids of the target items that carry it, for a folder that may hold copies the
        checkpoint does not know of. Half-made items (a crash mid-upload) are removed here, not indexed."""

    def write(self, target: TargetFolder, items: list[tuple[Item, Payload]]) -> list[Written]:
        """Put these items in the folder, flags and received date kept, each carrying its source key where
        the target can hold one; one Written per item in the same order. Refusals of one item are skipped,
        not raised; a full mailbox or lost credentials raise."""

    def note_written(self, target: TargetFolder, written: list[Written]) -> None:
        """Called on the pipeline's thread after each finished batch: record what the portal wrote in the
        folder's state where the target cannot tell it afterwards (IMAP: the APPENDUID ranges), else pass."""

    def close_folder(self, target: TargetFolder) -> dict:
        """Everything planned for the folder is written: the state to save (e.g. the target's UIDNEXT now)."""

    def inventory(self, target: TargetFolder) -> list[TargetItem]:
        """Every item in the target folder with its key, flags and whether the portal wrote it."""

    def comparable_flags(self, target: TargetFolder, flags: frozenset[str]) -> frozenset[str]:
        """The part of `flags` this target can hold (IMAP: system flags and allowed keywords; Graph: \\Seen
        and \\Flagged), so the delta only counts differences it can carry."""

    def set_flags(
        self, target: TargetFolder, changes: list[tuple[Any, frozenset[str], frozenset[str]]]
    ) -> None:
        """(target id, flags to add, flags to remove) for items copied earlier (IMAP STORE, Graph PATCH)."""

    def move(self, source: TargetFolder, destination: TargetFolder, ids: list[Any]) -> None:
        """Move items the portal wrote from one target folder to another (the user moved them on the source)."""

    def delete(self, target: TargetFolder, ids: list[Any]) -> None:
        """Delete items the portal wrote and the source no longer has (only under the endpoint's policy)."""

    def totals(self, target: TargetFolder) -> tuple[int, int]:
        """(items, bytes) in the target folder now. Bytes may be measured differently from the source's."""

    # Optional, for a writer with per-mailbox state that must outlive a run (Graph's upload window):
    #   mailbox_state() -> dict      saved in the checkpoint under "writer" with every progress report
    #   restore(state: dict) -> None given it back after open() at the next run, on whichever worker
    # and adopt(target, target_id, item) for items index() filed under "mid:<Message-ID>" (written, but
    # their finishing step never came): the pipeline pairs them by Message-ID and the writer finishes them.

    def compares_bytes(self) -> bool:
        """False when the target's sizes are not the source's (Exchange item sizes are not MIME sizes)."""


def close_all(things: Iterable[Any]) -> None:
    for thing in things:
        try:
            thing.close()
        except Exception:  # noqa: BLE001, S112 - closing is best effort
            continue


__all__ = [
    "ANSWERED",
    "DRAFT",
    "FLAGGED",
    "ROLES",
    "SEEN",
    "SYSTEM_FLAGS",
    "EndpointSpec",
    "Folder",
    "Item",
    "MailboxSpec",
    "Page",
    "Payload",
    "SourceReader",
    "TargetFolder",
    "TargetItem",
    "TargetWriter",
    "Written",
    "close_all",
    "item_key",
    "message_id",
    "subject_of",
]
