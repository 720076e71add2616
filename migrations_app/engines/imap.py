"""IMAP to IMAP: every folder, flags and INTERNALDATE kept, every message delivered byte for byte.

How a sync runs (docs/adr/006-imap-engine.md says why):
1. The caller's thread logs in to both sides, lists the source folders, maps their names onto the target
   (hierarchy separator and namespace prefix translated; imapclient decodes modified UTF-7), creates what is
   missing, and plans each folder: which source UIDs still need copying, cut into batches bounded by bytes.
2. A few worker threads, each with its own source and target connection, take batches from a queue:
   UID FETCH BODY.PEEK[] for the batch, then one MULTIAPPEND (or APPENDs) to the target. A message bigger
   than `large_message_bytes` is fetched in parts into a spool file and streamed out as one literal.
3. Each finished batch comes back to the caller's thread, which updates the checkpoint and calls progress.

What makes repeating and resuming safe: the checkpoint holds, per source folder, its UIDVALIDITY, the last
UID below which everything is done, ranges done above it, and a target "watermark" — the target's UIDNEXT
before this folder's unrecorded appends. Planning copies only UIDs above last_uid; and where the target may
hold copies the checkpoint does not know about (no checkpoint yet, a UIDVALIDITY change on either side, or
target UIDs at or above the watermark after a crash), it first indexes those target messages by
Message-ID + size (a hash of the header block + size when there is no Message-ID) and skips one source
message per matching target message, so two different messages sharing a Message-ID both arrive.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import logging
import queue
import re
import socket
import ssl
import tempfile
import threading
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors
from imapclient.imapclient import datetime_to_INTERNALDATE
from imapclient.response_parser import parse_fetch_response

from migrations_app.engines.base import (
    AUTH_FAILED,
    NETWORK,
    OVER_QUOTA,
    PROTOCOL,
    SERVER_BUSY,
    SKIP_REJECTED,
    SKIP_TOO_BIG,
    TARGET_MISSING,
    THROTTLED,
    TLS_FAILED,
    EndpointSpec,
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
    error_for,
)

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
# Copied as they are. Never \Recent (the server sets it) and not \Deleted: a message the user deleted but
# the source never expunged arrives as an ordinary message rather than one a client may silently purge.
SYSTEM_FLAGS = frozenset({b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Draft"})
# Response codes (RFC 5530 and friends) that decide between "retry", "give up" and "skip this message".
_CODES = (
    ("[OVERQUOTA]", OVER_QUOTA),
    ("[AUTHENTICATIONFAILED]", AUTH_FAILED),
    ("[UNAVAILABLE]", SERVER_BUSY),
    ("[INUSE]", SERVER_BUSY),
    ("[THROTTLED]", THROTTLED),
)
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_FETCH_CHUNK = 2000  # UIDs per metadata FETCH: keeps one response, and its parse, bounded


# --- errors -------------------------------------------------------------------------------------------------


def _code_in(text: str) -> str | None:
    upper = text.upper()
    for marker, code in _CODES:
        if marker in upper:
            return code
    return None


def engine_error(exc: BaseException, side: str = "") -> EngineError:
    """Translate what imapclient, imaplib, ssl and socket raise into our typed errors."""
    if isinstance(exc, EngineError):
        return exc
    where = f"{side}: " if side else ""
    text = f"{where}{exc}"
    if isinstance(exc, imap_errors.LoginError):
        return PermanentError(AUTH_FAILED, text)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(TLS_FAILED, text)
    if isinstance(exc, imap_errors.IMAPClientAbortError):
        # imaplib raises abort for BYE and for a connection that went away under us.
        code = _code_in(str(exc))
        if code:
            return error_for(code, text)
        lost = any(s in str(exc).lower() for s in ("socket error", "eof", "timed out", "reset"))
        return RetryableError(NETWORK if lost else SERVER_BUSY, text)
    if isinstance(exc, imap_errors.IMAPClientError):
        return error_for(_code_in(str(exc)) or PROTOCOL, text)
    if isinstance(exc, ssl.SSLError) and "handshake" in str(exc).lower():
        return PermanentError(TLS_FAILED, text)
    if isinstance(exc, (TimeoutError, socket.timeout, ConnectionError, OSError)):
        return RetryableError(NETWORK, text)
    return PermanentError(PROTOCOL, f"{where}{type(exc).__name__}: {exc}")


# --- connections --------------------------------------------------------------------------------------------


def _login_name(endpoint: EndpointSpec, mailbox_user: str) -> str:
    """Endpoint username by default; with options["master_user_separator"] (Dovecot master users, e.g. "*"),
    log in as <mailbox user><sep><endpoint username> with the endpoint's password."""
    separator = endpoint.options.get("master_user_separator")
    if separator and mailbox_user and endpoint.username:
        return f"{mailbox_user}{separator}{endpoint.username}"
    return endpoint.username or mailbox_user


def connect(
    endpoint: EndpointSpec, mailbox_user: str = "", *, side: str = "", timeout: float = 60
) -> IMAPClient:
    """A logged-in client. TLS by default, verifying certificates (options["ca_file"] adds a CA, for tests
    and private CAs); STARTTLS; plain text only where the endpoint says security="plain"."""
    options = endpoint.options
    timeout = options.get("timeout", timeout)
    try:
        context = None
        if endpoint.security in ("tls", "starttls"):
            context = ssl.create_default_context(cafile=options.get("ca_file"))
        elif endpoint.security != "plain":
            raise PermanentError(PROTOCOL, f"{side}: unknown security {endpoint.security!r}")
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port or (993 if endpoint.security == "tls" else 143),
            ssl=endpoint.security == "tls",
            ssl_context=context,
            timeout=timeout,
        )
        if endpoint.security == "starttls":
            client.starttls(context)
        client.normalise_times = False  # keep INTERNALDATE's own zone, so it goes back exactly as it came
        # imapclient sets imaplib's debug level to 5 to route its chatter to a logger; imaplib then builds
        # repr() strings of every response, message bodies included, before any logger can say no. That
        # was 90% of the engine's CPU on a 300 MB mailbox.
        client._imap.debug = 0
        client.login(_login_name(endpoint, mailbox_user), endpoint.password)
        return client
    except Exception as exc:
        raise engine_error(exc, side) from exc


def _close(client: IMAPClient | None) -> None:
    if client is not None:
        with suppress(Exception):
            client.logout()
        with suppress(Exception):
            client.shutdown()


# --- folder names -------------------------------------------------------------------------------------------


@dataclass
class _Namespace:
    prefix: str
    separator: str | None


def _personal_namespace(client: IMAPClient) -> _Namespace:
    separator = None
    prefix = ""
    if client.has_capability("NAMESPACE"):
        personal = client.namespace().personal
        if personal:
            prefix, separator = personal[0]
    if separator is None:
        listed = client.list_folders("", "")  # RFC 3501: LIST "" "" gives the hierarchy delimiter
        if listed and listed[0][1]:
            separator = listed[0][1]
    if isinstance(separator, bytes):
        separator = separator.decode()
    if isinstance(prefix, bytes):
        prefix = prefix.decode()
    return _Namespace(prefix or "", separator or None)


def map_folder_name(name: str, source: _Namespace, target: _Namespace) -> str:
    """Source folder name -> target folder name: namespace prefix swapped, separators translated. A name part
    that holds the target's separator (legal on a '/' server, not on a '.' one) gets '_' instead."""
    if name.upper() == "INBOX":
        return "INBOX"
    relative = name
    if source.prefix and name.startswith(source.prefix):
        relative = name[len(source.prefix) :]
    parts = relative.split(source.separator) if source.separator else [relative]
    target_separator = target.separator or "/"
    if target.separator:
        parts = [part.replace(target.separator, "_") for part in parts]
    if parts[0].upper() == "INBOX":  # a child of INBOX stays a child of INBOX, whatever the prefix
        return target_separator.join(["INBOX", *parts[1:]])
    return target.prefix + target_separator.join(parts)


@dataclass
class _Folder:
    name: str  # source
    target: str
    subscribed: bool


def _list_source_folders(src: IMAPClient, tgt: IMAPClient) -> list[_Folder]:
    source_ns, target_ns = _personal_namespace(src), _personal_namespace(tgt)
    subscribed = {name for _, _, name in src.list_sub_folders()}
    folders = []
    for flags, delimiter, name in src.list_folders():
        lowered = {f.lower() for f in flags}
        if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
            continue
        if delimiter and source_ns.separator is None:
            source_ns.separator = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
        folders.append(_Folder(name, map_folder_name(name, source_ns, target_ns), name in subscribed))
    # INBOX first (it is what people look at), then parents before their children.
    folders.sort(key=lambda f: (f.name.upper() != "INBOX", f.name))
    return folders


# --- message keys -------------------------------------------------------------------------------------------


def _header_field(data: dict, prefix: bytes) -> bytes | None:
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(prefix):
            return value
    return None


def _message_id(header: bytes | None) -> str | None:
    if not header:
        return None
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", header)
    match = _MESSAGE_ID.search(unfolded)
    if not match or not match.group(1).strip():
        return None
    return match.group(1).strip().decode("utf-8", "replace")


def _header_hash_key(header: bytes, size: int) -> str:
    return f"h:{hashlib.sha256(header).hexdigest()}:{size}"


def _keys(client: IMAPClient, uids: list[int], sizes: dict[int, int] | None = None) -> dict[int, str]:
    """uid -> dedupe key in the selected folder: Message-ID + size, or header-block hash + size."""
    keys: dict[int, str] = {}
    no_id: list[int] = []
    for chunk in _chunks(uids, _FETCH_CHUNK):
        wanted = [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"] + ([] if sizes else [b"RFC822.SIZE"])
        asked = set(chunk)
        for uid, data in _fetch(client, _uid_set(chunk), wanted).items():
            if uid not in asked:
                continue  # an unsolicited FETCH (a flag change, say) for another message
            size = sizes[uid] if sizes else data[b"RFC822.SIZE"]
            mid = _message_id(_header_field(data, b"BODY[HEADER.FIELDS"))
            if mid:
                keys[uid] = f"m:{mid}:{size}"
            else:
                no_id.append(uid)
                keys[uid] = f"?:{size}"
    for chunk in _chunks(no_id, 500):
        for uid, data in _fetch(client, _uid_set(chunk), [b"BODY.PEEK[HEADER]"]).items():
            if uid not in keys or b"BODY[HEADER]" not in data:
                continue
            size = int(keys[uid].split(":", 1)[1])
            keys[uid] = _header_hash_key(data.get(b"BODY[HEADER]") or b"", size)
    return keys


def _subject(header: bytes) -> str:
    try:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(header)
        return str(parsed.get("Subject", "") or "")
    except Exception:  # a subject is for people to read; a broken header must not stop the copy
        return ""


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fetch(client: IMAPClient, uid_set: str, items: list[bytes]) -> dict[int, dict]:
    """UID FETCH of a UID set such as "1:500,720" or "1:*". IMAPClient.fetch wants a list of every UID
    (and filters its answer by it), which makes long commands and slow parsing for big folders."""
    tag = client._imap._command("UID", "FETCH", uid_set, "(" + " ".join(i.decode() for i in items) + ")")
    typ, data = client._imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = client._imap._untagged_response(typ, data, "FETCH")
    return parse_fetch_response(data, client.normalise_times, True)


_UID_IN_FETCH = re.compile(rb"UID (\d+)")


def _fetch_bodies(client: IMAPClient, uid_set: str) -> dict[int, bytes]:
    """uid -> BODY[] for a UID set. Reads imaplib's raw (line, literal) pairs rather than running
    imapclient's general response parser over every token of every message."""
    imap = client._imap
    tag = imap._command("UID", "FETCH", uid_set, "(BODY.PEEK[])")
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    bodies: dict[int, bytes] = {}
    for index, item in enumerate(data):
        if not isinstance(item, tuple):
            continue  # the ")" after a literal, or an unsolicited FETCH (FLAGS) without one
        head, literal = item
        if not head.rstrip().endswith(b"}") or b"BODY[]" not in head.upper():
            return _fetch_bodies_slowly(client, data)
        match = _UID_IN_FETCH.search(head)
        if match is None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
            match = _UID_IN_FETCH.search(data[index + 1])  # a server that puts UID after the literal
        if match is None:
            return _fetch_bodies_slowly(client, data)
        bodies[int(match.group(1))] = literal
    return bodies


def _fetch_bodies_slowly(client: IMAPClient, data: list) -> dict[int, bytes]:
    parsed = parse_fetch_response(data, client.normalise_times, True)
    return {uid: d[b"BODY[]"] for uid, d in parsed.items() if b"BODY[]" in d}


def _uid_set(uids: list[int]) -> str:
    """Compact "1:5,7,9:12" so a big batch is a short command."""
    parts, start, prev = [], None, None
    for uid in sorted(uids):
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


# --- planning -----------------------------------------------------------------------------------------------


@dataclass
class _Message:
    uid: int
    size: int
    flags: tuple
    date: Any


@dataclass
class _Batch:
    folder: str
    target: str
    uidvalidity: int
    messages: list[_Message]
    large: bool = False

    @property
    def size(self) -> int:
        return sum(m.size for m in self.messages)


@dataclass
class _Unit:
    """A run of consecutive candidate UIDs: a batch to copy, or messages already dealt with."""

    low: int
    high: int
    done: bool
    items: int = 0
    size: int = 0


@dataclass
class _FolderState:
    folder: _Folder
    uidvalidity: int
    target_uidvalidity: int | None
    watermark: int | None
    base_last_uid: int
    base_done: list[list[int]]
    uidnext: int | None  # the source's, when planned
    units: list[_Unit] = field(default_factory=list)
    complete: bool = False
    result: FolderSync | None = None

    @classmethod
    def unchanged(cls, folder: _Folder, entry: dict) -> _FolderState:
        """A folder this pass copied nothing into, rebuilt from its checkpoint entry (for flag-only work)."""
        return cls(
            folder=folder,
            uidvalidity=entry["uidvalidity"],
            target_uidvalidity=entry.get("target_uidvalidity"),
            watermark=entry.get("watermark"),
            base_last_uid=entry["last_uid"],
            base_done=[list(r) for r in entry.get("done", [])],
            uidnext=None,
            complete=bool(entry.get("complete")),
            result=FolderSync(folder=folder.name, target_folder=folder.target),
        )

    def entry(self) -> dict:
        """This folder's part of the checkpoint: everything at or below last_uid is done, plus `done` ranges."""
        last_uid, done = self.base_last_uid, [list(r) for r in self.base_done]
        prefix = True
        for unit in self.units:
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
            # Everything below the UIDNEXT seen at planning was there to be planned, so is dealt with:
            # recording that lets the next pass skip this folder even if its newest messages were expunged.
            last_uid, done = max(last_uid, (self.uidnext or 1) - 1), []
        return {
            "uidvalidity": self.uidvalidity,
            "last_uid": last_uid,
            "done": done,
            "target": self.folder.target,
            "target_uidvalidity": self.target_uidvalidity,
            "watermark": self.watermark,
            "complete": self.complete,
        }


def _in_ranges(uid: int, ranges: list[list[int]]) -> bool:
    return any(low <= uid <= high for low, high in ranges)


@dataclass
class _BatchResult:
    batch: _Batch
    unit: _Unit
    state: _FolderState
    items: int = 0
    size: int = 0
    skipped: list[SkippedItem] = field(default_factory=list)


# --- the engine ---------------------------------------------------------------------------------------------


class ImapEngine(Engine):
    kind = "imap"

    def __init__(
        self,
        *,
        connections: int = 3,
        batch_bytes: int = 6 * 1024 * 1024,
        batch_messages: int = 250,
        large_message_bytes: int = 16 * 1024 * 1024,
        part_bytes: int = 4 * 1024 * 1024,
        timeout: float = 60,
        sync_flags: bool = False,
    ):
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.connections = connections
        self.batch_bytes = batch_bytes
        self.batch_messages = batch_messages
        self.large_message_bytes = large_message_bytes
        self.part_bytes = part_bytes
        self.timeout = timeout
        # Carry flag changes (read, flagged, answered, keywords) on messages copied by earlier passes over
        # to the target. It reads every message's Message-ID on both sides, so use it for the final delta
        # (cutover), not for every pre-stage pass.
        self.sync_flags = sync_flags

    def _connect(self, spec: MailboxSpec, side: str) -> IMAPClient:
        if side == "source":
            return connect(spec.source, spec.source_user or spec.email, side=side, timeout=self.timeout)
        return connect(spec.target, spec.target_user or spec.email, side=side, timeout=self.timeout)

    # --- preflight ------------------------------------------------------------------------------------------

    def preflight(self, spec: MailboxSpec) -> PreflightResult:
        src = tgt = None
        try:
            try:
                src = self._connect(spec, "source")
                tgt = self._connect(spec, "target")
            except PermanentError as exc:
                return PreflightResult(ok=False, code=exc.code, message=exc.message)
            try:
                tgt.select_folder("INBOX", readonly=True)
            except imap_errors.IMAPClientError as exc:
                return PreflightResult(ok=False, code=TARGET_MISSING, message=f"target: {exc}")
            size, count = spec.size_bytes, spec.item_count
            if not size:
                count = size = 0
                for folder in _list_source_folders(src, tgt):
                    n, b = _folder_totals(src, folder.name)
                    count, size = count + n, size + b
            free = _quota_free(tgt)
            if free is not None and size > free:
                return PreflightResult(
                    ok=False,
                    code=OVER_QUOTA,
                    message=f"the mailbox holds {size} bytes, the target has {free} free",
                    source_size_bytes=size,
                    source_item_count=count,
                    target_free_bytes=free,
                )
            return PreflightResult(
                ok=True, source_size_bytes=size, source_item_count=count, target_free_bytes=free
            )
        except Exception as exc:
            raise engine_error(exc) from exc
        finally:
            _close(src)
            _close(tgt)

    # --- verify ---------------------------------------------------------------------------------------------

    def verify(self, spec: MailboxSpec) -> VerifyResult:
        src = tgt = None
        try:
            src = self._connect(spec, "source")
            tgt = self._connect(spec, "target")
            existing = {name for _, _, name in tgt.list_folders()}
            result = VerifyResult()
            for folder in _list_source_folders(src, tgt):
                source_count, source_bytes = _folder_totals(src, folder.name)
                target_count = target_bytes = 0
                if folder.target in existing:
                    target_count, target_bytes = _folder_totals(tgt, folder.target)
                result.folders.append(
                    FolderComparison(
                        folder.name, folder.target, source_count, source_bytes, target_count, target_bytes
                    )
                )
            return result
        except Exception as exc:
            raise engine_error(exc) from exc
        finally:
            _close(src)
            _close(tgt)

    # --- sync -----------------------------------------------------------------------------------------------

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
        pending = 0
        src = tgt = None
        try:
            src = self._connect(spec, "source")
            tgt = self._connect(spec, "target")
            limit = _size_limit(spec.target, tgt)
            multiappend = tgt.has_capability("MULTIAPPEND")
            existing = {name for _, _, name in tgt.list_folders()}

            def start_worker() -> None:
                thread = threading.Thread(
                    target=self._worker,
                    args=(spec, work, events, stop, multiappend),
                    name=f"imap-copy-{len(workers)}",
                    daemon=True,
                )
                thread.start()
                workers.append(thread)

            for folder in _list_source_folders(src, tgt):
                # A folder with nothing new keeps its old checkpoint entry; a planned one replaces it.
                old = previous.get(folder.name)
                state, batches = self._plan_folder(src, tgt, folder, old, existing, limit, skipped)
                if state is None:
                    continue
                states[folder.name] = state
                for batch, unit in batches:
                    work.put((batch, unit, state))
                    pending += 1
                    if len(workers) < min(self.connections, pending):
                        start_worker()
                if not batches:
                    self._finish_folder(tgt, state)

            while pending:
                kind, payload = events.get()
                if kind == "error":
                    raise payload
                result: _BatchResult = payload
                pending -= 1
                result.unit.done = True
                state = result.state
                state.result.items_copied += result.items
                state.result.bytes_copied += result.size
                state.result.items_skipped += len(result.skipped)
                skipped.extend(result.skipped)
                totals["items"] += result.items
                totals["bytes"] += result.size
                copied["items"] += result.items
                copied["bytes"] += result.size
                if all(unit.done for unit in state.units):
                    self._finish_folder(tgt, state)
                if progress is not None:
                    progress(totals["items"], totals["bytes"], snapshot())
            if self.sync_flags:
                for folder in _list_source_folders(src, tgt):
                    entry = previous.get(folder.name)
                    if entry and entry.get("last_uid"):
                        state = states.get(folder.name)
                        updated = _sync_flags(src, tgt, folder)
                        if state is None:
                            state = states[folder.name] = _FolderState.unchanged(folder, entry)
                        state.result.flags_updated += updated
            checkpoint_now = snapshot()
            return SyncResult(
                items_copied=copied["items"],
                bytes_copied=copied["bytes"],
                checkpoint=checkpoint_now,
                folders=[s.result for s in states.values()],
                skipped=skipped,
            )
        except EngineError as exc:
            exc.checkpoint = exc.checkpoint or snapshot()
            raise
        except (imap_errors.IMAPClientError, OSError) as exc:
            error = engine_error(exc)
            error.checkpoint = snapshot()
            raise error from exc
        finally:
            stop.set()
            for _ in workers:
                work.put(None)
            for thread in workers:
                thread.join(timeout=self.timeout)
            _close(src)
            _close(tgt)

    def _finish_folder(self, tgt: IMAPClient, state: _FolderState) -> None:
        """Everything planned for the folder is on the target: move the watermark past our appends."""
        status = tgt.folder_status(state.folder.target, [b"UIDNEXT", b"UIDVALIDITY"])
        state.watermark = status[b"UIDNEXT"]
        state.target_uidvalidity = status[b"UIDVALIDITY"]
        state.complete = True

    def _plan_folder(
        self,
        src: IMAPClient,
        tgt: IMAPClient,
        folder: _Folder,
        old: dict | None,
        existing: set[str],
        limit: int | None,
        skipped: list[SkippedItem],
    ) -> tuple[_FolderState | None, list[tuple[_Batch, _Unit]]]:
        info = src.select_folder(folder.name, readonly=True)
        uidvalidity = info[b"UIDVALIDITY"]
        uidnext = info.get(b"UIDNEXT")
        same_source = bool(old) and old.get("uidvalidity") == uidvalidity
        last_uid = old["last_uid"] if same_source else 0
        done_ranges = old.get("done", []) if same_source else []
        if same_source and old.get("complete") and not done_ranges and uidnext and uidnext - 1 <= last_uid:
            return None, []  # nothing new: no need to even look at the target (keeps incremental passes fast)
        if not same_source and old:
            # The source folder was recreated: its earlier skipped items will be met (and listed) again.
            skipped[:] = [s for s in skipped if s.folder != folder.name]

        # The target folder: create it if missing, learn its UIDVALIDITY, UIDNEXT and allowed keywords.
        if folder.target not in existing:
            try:
                tgt.create_folder(folder.target)
            except imap_errors.IMAPClientError as exc:
                if "ALREADYEXISTS" not in str(exc).upper():
                    raise
            existing.add(folder.target)
            if folder.subscribed:
                with suppress(imap_errors.IMAPClientError):
                    tgt.subscribe_folder(folder.target)
        target_info = tgt.select_folder(folder.target)
        target_uidvalidity = target_info[b"UIDVALIDITY"]
        target_uidnext = target_info.get(b"UIDNEXT")
        target_exists = target_info[b"EXISTS"]
        permanent = {f.lower() for f in target_info.get(b"PERMANENTFLAGS", ())}
        any_keyword = b"\\*" in permanent

        index_from = None
        if not same_source or old.get("target_uidvalidity") != target_uidvalidity:
            index_from = 1 if target_exists else None
        elif old.get("watermark") is None or target_uidnext != old["watermark"]:
            index_from = old.get("watermark") or 1
        index: Counter = Counter()
        if index_from is not None and target_exists:
            target_uids = [u for u in tgt.search(["UID", f"{index_from}:*"]) if u >= index_from]
            index.update(_keys(tgt, target_uids).values())
        # Done with the target folder on this connection; STATUS later must not run on a selected mailbox.
        _unselect(tgt)

        state = _FolderState(
            folder=folder,
            uidvalidity=uidvalidity,
            target_uidvalidity=target_uidvalidity,
            watermark=target_uidnext,
            base_last_uid=last_uid,
            base_done=[list(r) for r in done_ranges],
            uidnext=uidnext,
            result=FolderSync(folder=folder.name, target_folder=folder.target),
        )
        if info[b"EXISTS"] == 0:
            return state, []
        # "n:*" always matches the highest UID even when it is below n, hence the filter.
        uids = [u for u in src.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid]
        uids = [u for u in uids if not _in_ranges(u, done_ranges)] if done_ranges else uids
        messages: list[_Message] = []
        for chunk in _chunks(sorted(uids), _FETCH_CHUNK):
            fetched = _fetch(src, _uid_set(chunk), [b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE"])
            for uid, data in fetched.items():
                if b"RFC822.SIZE" not in data or uid <= last_uid:
                    continue  # unsolicited FETCH for a message we did not ask about
                messages.append(_Message(uid, data[b"RFC822.SIZE"], data[b"FLAGS"], data[b"INTERNALDATE"]))
        messages.sort(key=lambda m: m.uid)
        source_keys = (
            _keys(src, [m.uid for m in messages], {m.uid: m.size for m in messages}) if index else {}
        )
        too_big = [m for m in messages if limit is not None and m.size > limit]
        subjects = _subjects(src, [m.uid for m in too_big])

        batches: list[tuple[_Batch, _Unit]] = []
        current: list[_Message] = []
        current_size = 0

        def close_batch() -> None:
            nonlocal current, current_size
            if current:
                batch = _Batch(folder.name, folder.target, uidvalidity, current)
                unit = _Unit(current[0].uid, current[-1].uid, False, len(current), current_size)
                state.units.append(unit)
                batches.append((batch, unit))
            current, current_size = [], 0

        def mark_done(uid: int) -> None:
            close_batch()
            if state.units and state.units[-1].done:
                state.units[-1].high = uid
            else:
                state.units.append(_Unit(uid, uid, True))

        for message in messages:
            key = source_keys.get(message.uid)
            if key is not None and index[key] > 0:
                index[key] -= 1
                state.result.items_already_there += 1
                mark_done(message.uid)
                continue
            if limit is not None and message.size > limit:
                item = SkippedItem(
                    folder.name,
                    subjects.get(message.uid, ""),
                    message.size,
                    f"{SKIP_TOO_BIG}: {message.size} bytes, the target takes at most {limit}",
                    uid=message.uid,
                )
                skipped.append(item)
                state.result.items_skipped += 1
                mark_done(message.uid)
                continue
            message.flags = _flags_for_target(message.flags, permanent, any_keyword)
            if message.size >= self.large_message_bytes:
                close_batch()
                batch = _Batch(folder.name, folder.target, uidvalidity, [message], large=True)
                unit = _Unit(message.uid, message.uid, False, 1, message.size)
                state.units.append(unit)
                batches.append((batch, unit))
                continue
            if current and (
                current_size + message.size > self.batch_bytes or len(current) >= self.batch_messages
            ):
                close_batch()
            current.append(message)
            current_size += message.size
        close_batch()
        return state, batches

    # --- the workers ----------------------------------------------------------------------------------------

    def _worker(
        self,
        spec: MailboxSpec,
        work: queue.Queue,
        events: queue.Queue,
        stop: threading.Event,
        multiappend: bool,
    ) -> None:
        src = tgt = None
        selected: dict[str, Any] = {"folder": None}
        try:
            src = self._connect(spec, "source")
            tgt = self._connect(spec, "target")
            while not stop.is_set():
                item = work.get()
                if item is None:
                    break
                batch, unit, state = item
                result = _BatchResult(batch, unit, state)
                self._copy_batch(src, tgt, batch, result, selected, multiappend)
                events.put(("done", result))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            events.put(("error", engine_error(exc)))
        finally:
            _close(src)
            _close(tgt)

    def _copy_batch(
        self,
        src: IMAPClient,
        tgt: IMAPClient,
        batch: _Batch,
        result: _BatchResult,
        selected: dict,
        multiappend: bool,
    ) -> None:
        if selected["folder"] != batch.folder:
            info = src.select_folder(batch.folder, readonly=True)
            if info[b"UIDVALIDITY"] != batch.uidvalidity:
                raise RetryableError(SERVER_BUSY, f"source: {batch.folder} was recreated during the copy")
            selected["folder"] = batch.folder
        if batch.large:
            self._copy_large(src, tgt, batch, result)
            return
        fetched = _fetch_bodies(src, _uid_set([m.uid for m in batch.messages]))
        items = []
        for message in batch.messages:
            body = fetched.get(message.uid)
            if body is not None:  # None: expunged since planning, nothing to copy
                items.append((message, body))
        if not items:
            return
        if multiappend and len(items) > 1:
            try:
                typ, data = tgt.multiappend(
                    batch.target,
                    [{"msg": body, "flags": m.flags, "date": m.date} for m, body in items],
                )
                if typ != "OK":  # imapclient 4.1 returns a NO here rather than raising it
                    raise imap_errors.IMAPClientError(f"MULTIAPPEND failed: {typ} {_text(data)}")
                result.items += len(items)
                result.size += sum(len(body) for _, body in items)
                return
            except imap_errors.IMAPClientError as exc:
                _raise_if_fatal(exc)
                # MULTIAPPEND is all or nothing: one refused message refuses the batch. Find it one by one.
                log.info("MULTIAPPEND refused (%s); appending one by one", exc)
        for message, body in items:
            try:
                tgt.append(batch.target, body, message.flags, message.date)
            except imap_errors.IMAPClientError as exc:
                _raise_if_fatal(exc)
                result.skipped.append(_rejected(batch.folder, message, body, exc))
                continue
            result.items += 1
            result.size += len(body)

    def _copy_large(self, src: IMAPClient, tgt: IMAPClient, batch: _Batch, result: _BatchResult) -> None:
        """Fetch in parts into a spool file (memory up to part_bytes, then disk) and stream it out as one
        literal: a 200 MB attachment never sits in memory whole."""
        message = batch.messages[0]
        with tempfile.SpooledTemporaryFile(max_size=self.part_bytes) as spool:
            offset = 0
            while True:
                fetched = src.fetch([message.uid], [f"BODY.PEEK[]<{offset}.{self.part_bytes}>".encode()])
                if message.uid not in fetched:
                    return  # expunged since planning
                part = _header_field(fetched[message.uid], b"BODY[]<") or b""
                spool.write(part)
                offset += len(part)
                if len(part) < self.part_bytes:
                    break
            spool.seek(0)
            header = spool.read(64 * 1024).split(b"\r\n\r\n", 1)[0]
            spool.seek(0)
            try:
                _append_stream(tgt, batch.target, message, spool, offset)
            except imap_errors.IMAPClientError as exc:
                _raise_if_fatal(exc)
                result.skipped.append(_rejected(batch.folder, message, header, exc))
                return
        result.items += 1
        result.size += offset


# --- helpers for the engine ---------------------------------------------------------------------------------


def _sync_flags(src: IMAPClient, tgt: IMAPClient, folder: _Folder) -> int:
    r"""Bring the target's flags in line with the source's, pairing messages by their dedupe keys in UID
    order. Only the flags the engine copies are touched (+FLAGS/-FLAGS, never a FLAGS replace), so a
    \Deleted set on the target is left alone. Returns how many target messages changed."""
    if not src.select_folder(folder.name, readonly=True)[b"EXISTS"]:
        return 0
    source = {u: d for u, d in _fetch(src, "1:*", [b"RFC822.SIZE", b"FLAGS"]).items() if b"FLAGS" in d}
    source_keys = _keys(src, sorted(source), {u: d[b"RFC822.SIZE"] for u, d in source.items()})
    info = tgt.select_folder(folder.target)
    try:
        if not info[b"EXISTS"]:
            return 0
        permanent = {f.lower() for f in info.get(b"PERMANENTFLAGS", ())}
        any_keyword = b"\\*" in permanent
        target = {u: d for u, d in _fetch(tgt, "1:*", [b"RFC822.SIZE", b"FLAGS"]).items() if b"FLAGS" in d}
        target_keys = _keys(tgt, sorted(target), {u: d[b"RFC822.SIZE"] for u, d in target.items()})
        by_key: dict[str, list[int]] = {}
        for uid in sorted(target_keys):
            by_key.setdefault(target_keys[uid], []).append(uid)
        add: dict[bytes, list[int]] = {}
        remove: dict[bytes, list[int]] = {}
        changed: set[int] = set()
        for uid in sorted(source_keys):
            matches = by_key.get(source_keys[uid])
            if not matches:
                continue
            target_uid = matches.pop(0)
            want = set(_flags_for_target(source[uid][b"FLAGS"], permanent, any_keyword))
            have = set(_flags_for_target(target[target_uid][b"FLAGS"], permanent, any_keyword))
            for flag in want - have:
                add.setdefault(flag, []).append(target_uid)
            for flag in have - want:
                remove.setdefault(flag, []).append(target_uid)
            if want != have:
                changed.add(target_uid)
        for flag, uids in add.items():
            for chunk in _chunks(uids, 1000):
                tgt.add_flags(chunk, [flag], silent=True)
        for flag, uids in remove.items():
            for chunk in _chunks(uids, 1000):
                tgt.remove_flags(chunk, [flag], silent=True)
        return len(changed)
    finally:
        _unselect(tgt)


def _unselect(client: IMAPClient) -> None:
    # UNSELECT leaves \Deleted messages alone; CLOSE would expunge them, so never CLOSE a target folder.
    if client.has_capability("UNSELECT"):
        client.unselect_folder()
    else:
        client.select_folder("INBOX", readonly=True)


def _flags_for_target(flags: tuple, permanent: set[bytes], any_keyword: bool) -> tuple:
    kept = []
    for flag in flags:
        if flag in SYSTEM_FLAGS or not flag.startswith(b"\\") and (any_keyword or flag.lower() in permanent):
            kept.append(flag)
    return tuple(kept)


def _size_limit(target: EndpointSpec, client: IMAPClient) -> int | None:
    """The smaller of the target's APPENDLIMIT (RFC 7889) and options["max_message_bytes"]."""
    limits = []
    if target.options.get("max_message_bytes"):
        limits.append(int(target.options["max_message_bytes"]))
    for capability in client.capabilities():
        if capability.upper().startswith(b"APPENDLIMIT="):
            with suppress(ValueError):
                limits.append(int(capability.split(b"=", 1)[1]))
    return min(limits) if limits else None


def _quota_free(client: IMAPClient) -> int | None:
    if not client.has_capability("QUOTA"):
        return None
    # Exception, not IMAPClientError: imapclient 4.1 raises IndexError when the user has no quota root.
    with suppress(Exception):
        _, quotas = client.get_quota_root("INBOX")
        for quota in quotas:
            if quota.resource.upper() == "STORAGE" and quota.limit:
                return max(0, (quota.limit - quota.usage) * 1024)  # STORAGE is in KiB
    return None


def _folder_totals(client: IMAPClient, folder: str) -> tuple[int, int]:
    info = client.select_folder(folder, readonly=True)
    if not info[b"EXISTS"]:
        return 0, 0
    sizes = _fetch(client, "1:*", [b"RFC822.SIZE"])
    return len(sizes), sum(data[b"RFC822.SIZE"] for data in sizes.values())


def _subjects(client: IMAPClient, uids: list[int]) -> dict[int, str]:
    if not uids:
        return {}
    fetched = client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return {uid: _subject(_header_field(data, b"BODY[HEADER.FIELDS") or b"") for uid, data in fetched.items()}


def _text(data) -> str:
    parts = data if isinstance(data, list | tuple) else [data]
    return " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts)


def _raise_if_fatal(exc: Exception) -> None:
    """NO [OVERQUOTA] stops the mailbox; [UNAVAILABLE]/[INUSE] is worth a retry; anything else is about
    this one message, which is then listed as skipped."""
    code = _code_in(str(exc))
    if code is not None:
        raise error_for(code, f"target: {exc}") from exc
    if isinstance(exc, imap_errors.IMAPClientAbortError):
        raise engine_error(exc, "target") from exc


def _rejected(folder: str, message: _Message, body_or_header: bytes, exc: Exception) -> SkippedItem:
    header = body_or_header.split(b"\r\n\r\n", 1)[0]
    text = str(exc)
    # [TOOBIG] (RFC 4469) or, from Dovecot, [LIMIT] "Mail size is larger than the maximum size allowed".
    reason = SKIP_TOO_BIG if any(code in text.upper() for code in ("[TOOBIG]", "[LIMIT]")) else SKIP_REJECTED
    return SkippedItem(folder, _subject(header), message.size, f"{reason}: {text}", uid=message.uid)


def _append_stream(client: IMAPClient, folder: str, message: _Message, stream, size: int) -> None:
    """APPEND with the literal sent from a file in pieces. imapclient only appends bytes it holds whole."""
    imap = client._imap
    literal_plus = client.has_capability("LITERAL+")
    tag = imap._new_tag()
    flags = b"(" + b" ".join(message.flags) + b")"
    date = b'"' + datetime_to_INTERNALDATE(message.date).encode() + b'"' if message.date else b""
    head = b" ".join(p for p in (tag, b"APPEND", client._normalise_folder(folder), flags, date) if p)
    imap.send(head + b" {%d%s}\r\n" % (size, b"+" if literal_plus else b""))
    if not literal_plus:
        while imap._get_response():  # None means the continuation request arrived
            if imap.tagged_commands.get(tag):
                typ, data = imap.tagged_commands.pop(tag)
                raise imap_errors.IMAPClientError(f"APPEND refused: {typ} {_text(data)}")
    while chunk := stream.read(1024 * 1024):
        imap.send(chunk)
    imap.send(b"\r\n")
    typ, data = imap._command_complete("APPEND", tag)
    if typ != "OK":
        raise imap_errors.IMAPClientError(f"APPEND command error: {typ} {_text(data)}")
