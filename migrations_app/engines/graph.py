"""IMAP source -> Exchange Online through Microsoft Graph (docs/adr/009-graph-engine.md says why).

The source side is the IMAP engine's reader (connect, folder listing, UID FETCH); the target side is
graph_client.GraphClient (app-only MSAL tokens, Graph's per-mailbox limits). A sync:
1. Pre-checks the target user and mailbox (MailboxNotEnabledForRESTAPI: no licensed Exchange Online mailbox,
   a PermanentError saying so).
2. Maps each source folder: INBOX and the special folders (by SPECIAL-USE flag or usual name) to Graph's
   well-known folders (inbox, sentitems, deleteditems, drafts, junkemail, archive); every other folder is
   found or created with mailFolders / childFolders, keeping the hierarchy.
3. Plans each folder: the source UIDs not yet copied, in batches of at most 20 messages and ~3 MB.
4. Up to `connections` threads (each with its own IMAP connection; Graph calls share the mailbox's 4 slots)
   copy batches: one $batch of creates per batch, as received mail (not drafts) with original dates and
   read state, each carrying a marker (Message-ID + SHA-256 of the MIME) in a single-value extended property.
5. The caller's thread records every finished batch in the checkpoint and calls progress.

Two ways to create a message (per endpoint, options["import_mode"]):
- "json" (default): POST .../messages with PR_MESSAGE_FLAGS (0x0E07) set at creation, so it is not a draft,
  PR_MESSAGE_DELIVERY_TIME (0x0E06) and PR_CLIENT_SUBMIT_TIME (0x0039) for the dates, attachments inline up
  to ~3 MB and through upload sessions above. Needs Mail.ReadWrite (application).
- "mime": the beta importMime action (full MIME fidelity, non-draft), then a $batch of PATCHes for read
  state and the marker. Needs Mail-Advanced.ReadWrite.All as well. Messages too big for one request go the
  JSON way.

Resume without duplicates: a folder's checkpoint keeps the source UIDVALIDITY, the UIDs dealt with and the
target folder's totalItemCount when it was last known to be ours ("target_count"). When the count moved
(a crash after a create and before its checkpoint, or mail delivered meanwhile) or there is no checkpoint
and the folder is not empty, the folder's markers are read first and one source message is skipped per
matching marker (a multiset). A message whose large attachments were still uploading when the worker died
carries a "pending" marker: it is deleted and made again.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import logging
import queue
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import requests

from migrations_app.engines.base import (
    AUTH_FAILED,
    OVER_QUOTA,
    PROTOCOL,
    SERVER_BUSY,
    SKIP_REJECTED,
    SKIP_TOO_BIG,
    TARGET_MISSING,
    Engine,
    EngineError,
    FolderComparison,
    FolderSync,
    MailboxSpec,
    PermanentError,
    PreflightResult,
    ProgressCallback,
    RetryableError,
    SkippedItem,
    SyncResult,
    VerifyResult,
)
from migrations_app.engines.graph_client import (
    NO_MAILBOX_MESSAGE,
    UPLOAD_BUDGET_BYTES,
    UPLOAD_WINDOW_SECONDS,
    BatchItem,
    GraphClient,
    graph_error,
)

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
IMPORT_MODES = ("json", "mime")
# Extended MAPI properties set at creation (a message's flags can only be chosen when it is made).
PR_MESSAGE_FLAGS = "Integer 0x0E07"
PR_MESSAGE_DELIVERY_TIME = "SystemTime 0x0E06"
PR_CLIENT_SUBMIT_TIME = "SystemTime 0x0039"
PR_LAST_VERB_EXECUTED = "Integer 0x1081"
MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8
# Our marker: which source message a target item came from. A named property in our own property set.
MARKER = "String {5b1a6f42-9c3e-4d0b-8f7e-2a9d64c1e7b3} Name MigrationPortalSource"
PENDING = "pending:"
# Graph takes at most 4 MB per request (a $batch included); base64 adds a third, so about 2.5 MB of raw
# message or attachments per request. A bigger message is created alone, its large attachments uploaded.
INLINE_BYTES = 2_500_000
BATCH_MESSAGES = 20
EXCHANGE_MAX_MESSAGE_BYTES = 150 * 1024 * 1024
UPLOAD_CHUNK = 10 * 320 * 1024  # upload session chunks: multiples of 320 KiB, under 4 MB

WELL_KNOWN_BY_FLAG = {
    b"\\sent": "sentitems",
    b"\\trash": "deleteditems",
    b"\\drafts": "drafts",
    b"\\junk": "junkemail",
    b"\\archive": "archive",
}
WELL_KNOWN_BY_NAME = {
    "inbox": "inbox",
    "sent": "sentitems",
    "sent items": "sentitems",
    "sent messages": "sentitems",
    "sent mail": "sentitems",
    "trash": "deleteditems",
    "deleted items": "deleteditems",
    "deleted messages": "deleteditems",
    "drafts": "drafts",
    "junk": "junkemail",
    "junk e-mail": "junkemail",
    "junk email": "junkemail",
    "spam": "junkemail",
    "archive": "archive",
}


def _imap():
    # Imported late: the IMAP reader pulls in imapclient, which only an IMAP source needs.
    from migrations_app.engines import imap

    return imap


# --- folders ------------------------------------------------------------------------------------------------


@dataclass
class SourceFolder:
    name: str  # as imapclient decodes it
    root: str  # a Graph well-known folder name, or "" for the top of the mailbox
    path: tuple[str, ...]  # display names below root

    @property
    def target(self) -> str:
        return "/".join((self.root or "msgfolderroot", *self.path))


def source_folders(client) -> list[SourceFolder]:
    """Every selectable source folder, mapped onto the Graph hierarchy."""
    imap = _imap()
    namespace = imap._personal_namespace(client)
    out = []
    for flags, delimiter, name in client.list_folders():
        lowered = {f.lower() for f in flags}
        if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
            continue
        separator = namespace.separator or (delimiter.decode() if isinstance(delimiter, bytes) else delimiter)
        relative = (
            name[len(namespace.prefix) :] if namespace.prefix and name.startswith(namespace.prefix) else name
        )
        parts = [p for p in (relative.split(separator) if separator else [relative]) if p]
        if not parts:
            continue  # the namespace prefix itself
        root = ""
        if parts[0].upper() == "INBOX":
            root, parts = "inbox", parts[1:]
        elif len(parts) == 1 and (lowered & set(WELL_KNOWN_BY_FLAG)):
            root, parts = WELL_KNOWN_BY_FLAG[next(iter(lowered & set(WELL_KNOWN_BY_FLAG)))], []
        elif parts[0].lower() in WELL_KNOWN_BY_NAME:
            root, parts = WELL_KNOWN_BY_NAME[parts[0].lower()], parts[1:]
        out.append(SourceFolder(name, root, tuple(parts)))
    out.sort(key=lambda f: (f.name.upper() != "INBOX", f.name))
    return out


class FolderResolver:
    """Target folder path -> Graph folder id, creating what is missing (parents before children)."""

    def __init__(self, graph: GraphClient, user: str):
        self.graph = graph
        self.user = user
        self.ids: dict[str, str] = {}
        self.lock = threading.Lock()

    def _child(self, parent_id: str | None, name: str, create: bool) -> str | None:
        base = f"users/{self.user}/mailFolders" + (f"/{parent_id}/childFolders" if parent_id else "")
        escaped = name.replace("'", "''")
        for folder in self.graph.pages(base, {"$filter": f"displayName eq '{escaped}'", "$top": "10"}):
            if folder["displayName"] == name:
                return folder["id"]
        if not create:
            return None
        response = self.graph.request("POST", base, json={"displayName": name}, ok=(409,))
        if response.status_code == 409:  # made meanwhile (another pass, or a person)
            return self._child(parent_id, name, create=False)
        return response.json()["id"]

    def resolve(self, folder: SourceFolder, *, create: bool = True) -> str | None:
        with self.lock:
            key = folder.target
            if key in self.ids:
                return self.ids[key]
            parent_id = None
            if folder.root:
                parent_id = self.ids.get(folder.root)
                if parent_id is None:
                    parent_id = self.graph.get(f"users/{self.user}/mailFolders/{folder.root}")["id"]
                    self.ids[folder.root] = parent_id
            walked = folder.root or "msgfolderroot"
            for name in folder.path:
                walked += "/" + name
                if walked in self.ids:
                    parent_id = self.ids[walked]
                    continue
                parent_id = self._child(parent_id, name, create)
                if parent_id is None:
                    return None
                self.ids[walked] = parent_id
            self.ids[key] = parent_id
            return parent_id


# --- messages -----------------------------------------------------------------------------------------------


def marker_value(raw: bytes) -> str:
    parsed_id = _imap()._message_id(raw.split(b"\r\n\r\n", 1)[0]) or ""
    return f"{parsed_id}|{hashlib.sha256(raw).hexdigest()[:40]}"


def _graph_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _recipients(parsed: EmailMessage, header: str) -> list[dict]:
    values = parsed.get_all(header) or []
    return [
        {"emailAddress": {"name": name, "address": address}}
        for name, address in email.utils.getaddresses([str(v) for v in values])
        if address
    ]


@dataclass
class Attachment:
    name: str
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None

    def as_json(self) -> dict:
        out = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.data).decode(),
            "isInline": self.inline,
        }
        if self.content_id:
            out["contentId"] = self.content_id
        return out


def message_json(
    raw: bytes, *, seen: bool, flagged: bool, answered: bool, draft: bool, received
) -> tuple[dict, list[Attachment]]:
    """A Graph message for JSON create, and the attachments too big to send inline."""
    parsed: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
    sent = None
    with suppress(TypeError, ValueError, IndexError):
        sent = email.utils.parsedate_to_datetime(str(parsed.get("Date"))) if parsed.get("Date") else None
    body_part = parsed.get_body(preferencelist=("html", "plain"))
    body = {"contentType": "text", "content": ""}
    if body_part is not None:
        with suppress(LookupError, ValueError):
            body = {
                "contentType": "html" if body_part.get_content_subtype() == "html" else "text",
                "content": body_part.get_content(),
            }
    attachments: list[Attachment] = []
    for part in parsed.iter_attachments() if parsed.is_multipart() else []:
        with suppress(LookupError, ValueError):
            data = part.get_payload(decode=True) or b""
            attachments.append(
                Attachment(
                    name=part.get_filename() or "attachment",
                    content_type=part.get_content_type(),
                    data=data,
                    inline=part.get_content_disposition() == "inline",
                    content_id=(part.get("Content-ID") or "").strip("<>") or None,
                )
            )
    flags = (MSGFLAG_READ if seen else 0) | (MSGFLAG_UNSENT if draft else 0)
    props = [
        {"id": PR_MESSAGE_FLAGS, "value": str(flags)},
        {"id": PR_MESSAGE_DELIVERY_TIME, "value": _graph_time(received or sent)},
        {"id": PR_CLIENT_SUBMIT_TIME, "value": _graph_time(sent or received)},
    ]
    if answered:
        props.append({"id": PR_LAST_VERB_EXECUTED, "value": "102"})  # EXCHIVERB_REPLYTOSENDER
    message: dict[str, Any] = {
        "subject": str(parsed.get("Subject", "") or ""),
        "body": body,
        "isRead": seen,
        "toRecipients": _recipients(parsed, "To"),
        "ccRecipients": _recipients(parsed, "Cc"),
        "bccRecipients": _recipients(parsed, "Bcc"),
        "replyTo": _recipients(parsed, "Reply-To"),
        "singleValueExtendedProperties": [p for p in props if p["value"] is not None],
    }
    sender = _recipients(parsed, "From")
    if sender:
        message["from"] = sender[0]
    if parsed.get("Message-ID"):
        message["internetMessageId"] = str(parsed.get("Message-ID")).strip()
    if flagged:
        message["flag"] = {"flagStatus": "flagged"}
    importance = str(parsed.get("Importance", "") or "").lower()
    if importance in ("low", "high"):
        message["importance"] = importance
    # Attachments ride inline while the request stays under Graph's 4 MB (base64 adds a third); the
    # rest go through upload sessions after the create.
    budget = max(0, INLINE_BYTES - len(str(body["content"]).encode()))
    small, large = [], []
    used = 0
    for attachment in attachments:
        if used + len(attachment.data) <= budget:
            small.append(attachment.as_json())
            used += len(attachment.data)
        else:
            large.append(attachment)
    if small:
        message["attachments"] = small
    return message, large


# --- planning -----------------------------------------------------------------------------------------------


@dataclass
class _Message:
    uid: int
    size: int
    flags: tuple
    date: Any


@dataclass
class _Unit:
    low: int
    high: int
    done: bool = False


@dataclass
class _Batch:
    folder: SourceFolder
    target_id: str
    uidvalidity: int
    messages: list[_Message]
    unit: _Unit
    state: _FolderState
    large: bool = False


@dataclass
class _FolderState:
    folder: SourceFolder
    uidvalidity: int
    uidnext: int | None
    target_id: str
    target_count: int | None
    base_last_uid: int
    base_done: list[list[int]]
    index: dict[str, list[str]] = field(default_factory=dict)  # marker -> target message ids
    units: list[_Unit] = field(default_factory=list)
    complete: bool = False
    result: FolderSync | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards `index` across the workers

    def entry(self) -> dict:
        last_uid, done, prefix = self.base_last_uid, [list(r) for r in self.base_done], True
        for unit in sorted(self.units, key=lambda u: u.low):
            if prefix and unit.done:
                last_uid = max(last_uid, unit.high)
            elif unit.done:
                if done and done[-1][1] + 1 >= unit.low:
                    done[-1][1] = unit.high
                else:
                    done.append([unit.low, unit.high])
            else:
                prefix = False
        done = [r for r in done if r[1] > last_uid]
        if self.complete:
            last_uid, done = max(last_uid, (self.uidnext or 1) - 1), []
        return {
            "uidvalidity": self.uidvalidity,
            "last_uid": last_uid,
            "done": done,
            "target": self.folder.target,
            "target_id": self.target_id,
            "target_count": self.target_count,
            "complete": self.complete,
        }


@dataclass
class _BatchResult:
    batch: _Batch
    items: int = 0
    size: int = 0
    already_there: int = 0
    skipped: list[SkippedItem] = field(default_factory=list)


# --- the engine ---------------------------------------------------------------------------------------------


class GraphEngine(Engine):
    kind = "graph"

    def __init__(
        self,
        *,
        connections: int = 4,
        http_client: requests.Session | None = None,
        max_wait: float = 120.0,
        timeout: float = 60.0,
        batch_messages: int = BATCH_MESSAGES,
        batch_bytes: int = INLINE_BYTES,
        upload_budget_bytes: int = UPLOAD_BUDGET_BYTES,
        upload_window: float = UPLOAD_WINDOW_SECONDS,
    ):
        if not 1 <= connections <= 4:
            raise ValueError("connections must be 1 to 4 (Graph allows 4 concurrent requests per mailbox)")
        self.connections = connections
        self.http_client = http_client
        self.max_wait = max_wait
        self.timeout = timeout
        self.batch_messages = min(batch_messages, 20)
        self.batch_bytes = batch_bytes
        # Graph's per-mailbox upload limit (150 MB in 5 minutes); smaller only for tests and drills.
        self.upload_budget_bytes = upload_budget_bytes
        self.upload_window = upload_window

    # --- plumbing -----------------------------------------------------------------------------------------

    def _graph(self, spec: MailboxSpec) -> GraphClient:
        return GraphClient(
            spec.target,
            self._user(spec),
            http_client=self.http_client,
            concurrency=min(4, spec.target.options.get("concurrency", 4)),
            max_wait=self.max_wait,
            timeout=self.timeout,
            upload_budget_bytes=self.upload_budget_bytes,
            upload_window=self.upload_window,
        )

    @staticmethod
    def _user(spec: MailboxSpec) -> str:
        return quote(spec.target_user or spec.email, safe="@'+")

    @staticmethod
    def _mode(spec: MailboxSpec) -> str:
        mode = spec.target.options.get("import_mode", "json")
        if mode not in IMPORT_MODES:
            raise PermanentError(PROTOCOL, f"target: import_mode must be one of {', '.join(IMPORT_MODES)}")
        return mode

    def _source(self, spec: MailboxSpec):
        if spec.source.kind != "imap":
            raise PermanentError(
                PROTOCOL, f"source: the graph engine reads IMAP sources, not {spec.source.kind}"
            )
        return _imap().connect(
            spec.source, spec.source_user or spec.email, side="source", timeout=self.timeout
        )

    def _check_target(self, graph: GraphClient, user: str) -> str:
        """The user exists and has a mailbox Graph can reach; returns its kind (user, shared, room, ...)."""
        graph.get(f"users/{user}", params={"$select": "id,userPrincipalName,mail"})
        try:
            settings = graph.get(f"users/{user}/mailboxSettings")
        except PermanentError as exc:
            if "MailboxNotEnabledForRESTAPI" in exc.message or exc.code == TARGET_MISSING:
                raise PermanentError(
                    TARGET_MISSING, "target: " + NO_MAILBOX_MESSAGE.format(user=user)
                ) from exc
            raise
        return settings.get("userPurpose") or "user"

    # --- preflight ----------------------------------------------------------------------------------------

    def preflight(self, spec: MailboxSpec) -> PreflightResult:
        src = None
        try:
            self._mode(spec)
            graph = self._graph(spec)
            kind = self._check_target(graph, self._user(spec))
            src = self._source(spec)
            size, count = spec.size_bytes, spec.item_count
            if not size:
                count = size = 0
                for folder in source_folders(src):
                    n, b = _imap()._folder_totals(src, folder.name)
                    count, size = count + n, size + b
            return PreflightResult(ok=True, source_size_bytes=size, source_item_count=count, target_kind=kind)
        except PermanentError as exc:
            return PreflightResult(ok=False, code=exc.code, message=exc.message)
        except EngineError:
            raise
        except Exception as exc:
            raise _imap().engine_error(exc, "source") from exc
        finally:
            _imap()._close(src)

    # --- verify -------------------------------------------------------------------------------------------

    def verify(self, spec: MailboxSpec) -> VerifyResult:
        src = None
        try:
            graph = self._graph(spec)
            user = self._user(spec)
            resolver = FolderResolver(graph, user)
            src = self._source(spec)
            # Several source folders may land in one target folder ("Sent" and "Sent Items" both in sentitems):
            # compare each target folder with the sum of its sources.
            by_target: dict[str, list] = {}
            for folder in source_folders(src):
                count, size = _imap()._folder_totals(src, folder.name)
                entry = by_target.setdefault(folder.target, [folder, [], 0, 0])
                entry[1].append(folder.name)
                entry[2] += count
                entry[3] += size
            result = VerifyResult()
            for target_path, (folder, names, count, size) in by_target.items():
                target_id = resolver.resolve(folder, create=False)
                target = graph.get(f"users/{user}/mailFolders/{target_id}") if target_id else {}
                result.folders.append(
                    FolderComparison(
                        " + ".join(names),
                        target_path,
                        count,
                        size,
                        int(target.get("totalItemCount", 0)),
                        int(target.get("sizeInBytes", 0)),
                        compare_bytes=False,  # Exchange's item sizes are not MIME sizes
                    )
                )
            return result
        except EngineError:
            raise
        except Exception as exc:
            raise _imap().engine_error(exc, "source") from exc
        finally:
            _imap()._close(src)

    # --- sync ---------------------------------------------------------------------------------------------

    def sync(
        self,
        spec: MailboxSpec,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        cp = checkpoint if checkpoint and checkpoint.get("engine") == self.kind else {}
        totals = {"items": int(cp.get("items", 0)), "bytes": int(cp.get("bytes", 0))}
        previous = dict(cp.get("folders", {}))
        skipped = [SkippedItem.from_dict(s) for s in cp.get("skipped", [])]
        states: dict[str, _FolderState] = {}
        copied = {"items": 0, "bytes": 0}

        def snapshot() -> dict:
            folders = dict(previous)
            folders.update({name: state.entry() for name, state in states.items()})
            return {
                "engine": self.kind,
                "version": CHECKPOINT_VERSION,
                "items": totals["items"],
                "bytes": totals["bytes"],
                "folders": folders,
                "skipped": [s.as_dict() for s in skipped],
            }

        work: queue.Queue = queue.Queue()
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        workers: list[threading.Thread] = []
        src = None
        try:
            mode = self._mode(spec)
            graph = self._graph(spec)
            user = self._user(spec)
            self._check_target(graph, user)
            resolver = FolderResolver(graph, user)
            src = self._source(spec)
            limit = int(spec.target.options.get("max_message_bytes", EXCHANGE_MAX_MESSAGE_BYTES))
            pending = 0
            for folder in source_folders(src):
                state, batches = self._plan_folder(
                    src, graph, resolver, user, folder, previous.get(folder.name), limit, skipped
                )
                if state is None:
                    continue
                states[folder.name] = state
                for batch in batches:
                    work.put(batch)
                    pending += 1
                    if len(workers) < min(self.connections, pending):
                        thread = threading.Thread(
                            target=self._worker,
                            args=(spec, graph, user, mode, work, events, stop),
                            name=f"graph-copy-{len(workers)}",
                            daemon=True,
                        )
                        thread.start()
                        workers.append(thread)
                if not batches:
                    self._finish_folder(graph, user, state)
            while pending:
                kind, payload = events.get()
                if kind == "error":
                    raise payload
                result: _BatchResult = payload
                pending -= 1
                result.batch.unit.done = True
                state = result.batch.state
                state.result.items_copied += result.items
                state.result.bytes_copied += result.size
                state.result.items_already_there += result.already_there
                state.result.items_skipped += len(result.skipped)
                skipped.extend(result.skipped)
                totals["items"] += result.items
                totals["bytes"] += result.size
                copied["items"] += result.items
                copied["bytes"] += result.size
                if all(unit.done for unit in state.units):
                    self._finish_folder(graph, user, state)
                if progress is not None:
                    progress(totals["items"], totals["bytes"], snapshot())
            return SyncResult(
                items_copied=copied["items"],
                bytes_copied=copied["bytes"],
                checkpoint=snapshot(),
                folders=[s.result for s in states.values()],
                skipped=skipped,
            )
        except EngineError as exc:
            exc.checkpoint = exc.checkpoint or snapshot()
            raise
        except Exception as exc:
            error = _imap().engine_error(exc, "source")
            error.checkpoint = snapshot()
            raise error from exc
        finally:
            stop.set()
            for _ in workers:
                work.put(None)
            for thread in workers:
                thread.join(timeout=self.timeout)
            _imap()._close(src)

    def _finish_folder(self, graph: GraphClient, user: str, state: _FolderState) -> None:
        """Everything planned is on the target: its count now is ours, the next pass trusts it."""
        state.target_count = int(graph.get(f"users/{user}/mailFolders/{state.target_id}")["totalItemCount"])
        state.complete = True

    def _plan_folder(self, src, graph, resolver, user, folder, old, limit, skipped):
        imap = _imap()
        info = src.select_folder(folder.name, readonly=True)
        uidvalidity = info[b"UIDVALIDITY"]
        uidnext = info.get(b"UIDNEXT")
        same = bool(old) and old.get("uidvalidity") == uidvalidity
        last_uid = old["last_uid"] if same else 0
        done_ranges = old.get("done", []) if same else []
        if same and old.get("complete") and not done_ranges and uidnext and uidnext - 1 <= last_uid:
            return None, []
        if old and not same:
            skipped[:] = [s for s in skipped if s.folder != folder.name]
        target_id = resolver.resolve(folder)
        count = int(graph.get(f"users/{user}/mailFolders/{target_id}")["totalItemCount"])
        state = _FolderState(
            folder=folder,
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            target_id=target_id,
            target_count=old.get("target_count") if same else None,
            base_last_uid=last_uid,
            base_done=[list(r) for r in done_ranges],
            result=FolderSync(folder=folder.name, target_folder=folder.target),
        )
        if count and (not same or state.target_count != count):
            state.index = self._index(graph, user, target_id)
        state.target_count = count  # a crash after our next create leaves the folder at another count

        uids = [u for u in src.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
        uids = [u for u in uids if not any(lo <= u <= hi for lo, hi in done_ranges)]
        messages: list[_Message] = []
        for chunk in imap._chunks(sorted(uids), imap._FETCH_CHUNK):
            fetched = imap._fetch(src, imap._uid_set(chunk), [b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE"])
            for uid, data in fetched.items():
                if b"RFC822.SIZE" in data and uid > last_uid:
                    messages.append(
                        _Message(uid, data[b"RFC822.SIZE"], data[b"FLAGS"], data[b"INTERNALDATE"])
                    )
        messages.sort(key=lambda m: m.uid)
        too_big = [m for m in messages if m.size > limit]
        subjects = imap._subjects(src, [m.uid for m in too_big])

        batches: list[_Batch] = []
        current: list[_Message] = []
        size = 0

        def close() -> None:
            nonlocal current, size
            if current:
                unit = _Unit(current[0].uid, current[-1].uid)
                state.units.append(unit)
                batches.append(_Batch(folder, target_id, uidvalidity, current, unit, state))
            current, size = [], 0

        for message in messages:
            if message.size > limit:
                close()
                skipped.append(
                    SkippedItem(
                        folder.name,
                        subjects.get(message.uid, ""),
                        message.size,
                        f"{SKIP_TOO_BIG}: {message.size} bytes, Exchange Online takes at most {limit}",
                        uid=message.uid,
                    )
                )
                state.result.items_skipped += 1
                state.units.append(_Unit(message.uid, message.uid, done=True))
                continue
            if message.size >= self.batch_bytes:
                close()
                unit = _Unit(message.uid, message.uid)
                state.units.append(unit)
                batches.append(_Batch(folder, target_id, uidvalidity, [message], unit, state, large=True))
                continue
            if current and (size + message.size > self.batch_bytes or len(current) >= self.batch_messages):
                close()
            current.append(message)
            size += message.size
        close()
        return state, batches

    def _index(self, graph: GraphClient, user: str, folder_id: str) -> dict[str, list[str]]:
        """marker -> target ids for a folder that may hold copies the checkpoint does not know about.
        Messages a dead worker left half made ("pending" marker) are deleted: they are made again."""
        index: dict[str, list[str]] = {}
        params = {
            "$select": "id,internetMessageId",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{MARKER}')",
            "$top": "250",
        }
        for message in graph.pages(f"users/{user}/mailFolders/{folder_id}/messages", params):
            props = message.get("singleValueExtendedProperties") or []
            value = next((p["value"] for p in props if p["id"].lower() == MARKER.lower()), None)
            if value and value.startswith(PENDING):
                graph.request("DELETE", f"users/{user}/messages/{message['id']}", ok=(404,))
                continue
            key = value or f"mid:{message.get('internetMessageId') or ''}"
            index.setdefault(key, []).append(message["id"])
        return index

    # --- workers ------------------------------------------------------------------------------------------

    def _worker(self, spec, graph, user, mode, work, events, stop) -> None:
        src = None
        selected = {"folder": None}
        try:
            src = self._source(spec)
            while not stop.is_set():
                batch = work.get()
                if batch is None:
                    break
                result = _BatchResult(batch)
                self._copy_batch(src, graph, user, mode, batch, result, selected)
                events.put(("done", result))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            events.put(
                ("error", exc if isinstance(exc, EngineError) else _imap().engine_error(exc, "source"))
            )
        finally:
            _imap()._close(src)

    def _copy_batch(
        self, src, graph: GraphClient, user: str, mode: str, batch: _Batch, result: _BatchResult, selected
    ) -> None:
        imap = _imap()
        if selected["folder"] != batch.folder.name:
            info = src.select_folder(batch.folder.name, readonly=True)
            if info[b"UIDVALIDITY"] != batch.uidvalidity:
                raise RetryableError(
                    SERVER_BUSY, f"source: {batch.folder.name} was recreated during the copy"
                )
            selected["folder"] = batch.folder.name
        bodies = imap._fetch_bodies(src, imap._uid_set([m.uid for m in batch.messages]))
        todo: list[tuple[_Message, bytes, str]] = []
        patch_existing: list[tuple[_Message, str, str]] = []
        index = batch.state.index
        for message in batch.messages:
            raw = bodies.get(message.uid)
            if raw is None:
                continue  # expunged since planning
            marker = marker_value(raw)
            with batch.state.lock:
                if index.get(marker):
                    index[marker].pop()
                    result.already_there += 1
                    continue
                mid_key = f"mid:{marker.split('|', 1)[0]}"
                if mode == "mime" and marker.split("|", 1)[0] and index.get(mid_key):
                    # imported by importMime, but the worker died before its read state and marker were set
                    patch_existing.append((message, index[mid_key].pop(), marker))
                    result.already_there += 1
                    continue
            todo.append((message, raw, marker))
        if patch_existing:
            self._patch(graph, user, [(m, target_id, marker) for m, target_id, marker in patch_existing])
        if batch.large or any(len(raw) >= INLINE_BYTES for _, raw, _ in todo):
            for message, raw, marker in todo:
                self._copy_large(graph, user, batch, message, raw, marker, result)
            return
        if mode == "mime":
            self._copy_mime(graph, user, batch, todo, result)
        else:
            self._copy_json(graph, user, batch, todo, result)

    def _create_item(
        self, user: str, batch: _Batch, message: _Message, raw: bytes, marker: str
    ) -> tuple[BatchItem, list[Attachment]]:
        flags = {f.lower() for f in message.flags}
        data, large = message_json(
            raw,
            seen=b"\\seen" in flags,
            flagged=b"\\flagged" in flags,
            answered=b"\\answered" in flags,
            draft=b"\\draft" in flags,
            received=message.date,
        )
        data["singleValueExtendedProperties"].append(
            {"id": MARKER, "value": (PENDING if large else "") + marker}
        )
        item = BatchItem("POST", f"/users/{user}/mailFolders/{batch.target_id}/messages", data, size=len(raw))
        return item, large

    def _judge(
        self, batch: _Batch, message: _Message, raw: bytes, status: int, body, result: _BatchResult
    ) -> bool:
        """True when created; quota stops the mailbox; another refusal lists the message as skipped."""
        if 200 <= status < 300:
            return True
        error = graph_error(body, status)
        if isinstance(error, RetryableError) or error.code in (OVER_QUOTA, TARGET_MISSING, AUTH_FAILED):
            raise error  # about the mailbox or the app, not this message
        subject = _imap()._subject(raw.split(b"\r\n\r\n", 1)[0])
        result.skipped.append(
            SkippedItem(
                batch.folder.name, subject, message.size, f"{SKIP_REJECTED}: {error.message}", uid=message.uid
            )
        )
        return False

    def _copy_json(self, graph, user, batch, todo, result) -> None:
        items = [self._create_item(user, batch, m, raw, marker)[0] for m, raw, marker in todo]
        answers = graph.batch(items)
        for (message, raw, _), (status, body) in zip(todo, answers, strict=True):
            if self._judge(batch, message, raw, status, body, result):
                result.items += 1
                result.size += len(raw)

    def _copy_mime(self, graph, user, batch, todo, result) -> None:
        items = [
            BatchItem(
                "POST",
                f"/users/{user}/mailFolders/{batch.target_id}/importMime",
                base64.b64encode(raw).decode(),
                headers={"Content-Type": "text/plain"},
                size=len(raw),
            )
            for _, raw, _ in todo
        ]
        answers = graph.batch(items, version="beta")
        made = []
        for (message, raw, marker), (status, body) in zip(todo, answers, strict=True):
            if self._judge(batch, message, raw, status, body, result):
                made.append((message, body["id"], marker))
                result.items += 1
                result.size += len(raw)
        self._patch(graph, user, made)

    def _patch(self, graph: GraphClient, user: str, made: list[tuple[_Message, str, str]]) -> None:
        """Read state and the marker on messages importMime made (it cannot set them itself)."""
        for start in range(0, len(made), 20):
            chunk = made[start : start + 20]
            items = [
                BatchItem(
                    "PATCH",
                    f"/users/{user}/messages/{target_id}",
                    {
                        "isRead": b"\\seen" in {f.lower() for f in message.flags},
                        "singleValueExtendedProperties": [{"id": MARKER, "value": marker}],
                    },
                )
                for message, target_id, marker in chunk
            ]
            for status, body in graph.batch(items):
                if not 200 <= status < 300:
                    raise graph_error(body, status)

    def _copy_large(self, graph: GraphClient, user: str, batch, message, raw, marker, result) -> None:
        """One message: JSON create (inline attachments up to the request limit, a pending marker), then
        every large attachment through an upload session, then the final marker."""
        item, large = self._create_item(user, batch, message, raw, marker)
        response = graph.request(
            "POST", item.url, json=item.body, upload=min(len(raw), INLINE_BYTES), ok=(400, 413)
        )
        if response.status_code >= 400:
            self._judge(batch, message, raw, response.status_code, response.json(), result)
            return
        created = response.json()["id"]
        for attachment in large:
            session = graph.request(
                "POST",
                f"users/{user}/messages/{created}/attachments/createUploadSession",
                json={
                    "AttachmentItem": {
                        "attachmentType": "file",
                        "name": attachment.name,
                        "size": len(attachment.data),
                        "contentType": attachment.content_type,
                        "isInline": attachment.inline,
                        **({"contentId": attachment.content_id} if attachment.content_id else {}),
                    }
                },
            ).json()
            total = len(attachment.data)
            for start in range(0, total, UPLOAD_CHUNK):
                chunk = attachment.data[start : start + UPLOAD_CHUNK]
                graph.request(
                    "PUT",
                    session["uploadUrl"],
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
                    },
                    upload=len(chunk),
                    authorize=False,  # the upload URL carries its own token; sending ours is refused
                )
        if large:
            graph.request(
                "PATCH",
                f"users/{user}/messages/{created}",
                json={"singleValueExtendedProperties": [{"id": MARKER, "value": marker}]},
            )
        result.items += 1
        result.size += len(raw)
