"""The Graph (Exchange Online) target writer: folders mapped onto Graph's well-known folders and hierarchy,
messages created as received mail in $batches of 20 (JSON) or by importMime (MIME), large ones alone with
their big attachments through upload sessions, every item carrying our marker (its Message-ID and source key
in a named extended property), and for the cutover delta: read and flag state PATCHed, moves, deletions.

Two ways to create a message (per endpoint, options["import_mode"]):
- "json" (default): POST .../messages with PR_MESSAGE_FLAGS (0x0E07) set at creation, so it is not a draft,
  PR_MESSAGE_DELIVERY_TIME (0x0E06) and PR_CLIENT_SUBMIT_TIME (0x0039) for the dates, attachments inline up
  to ~2.5 MB and through upload sessions above, forwarded messages as item attachments. Needs Mail.ReadWrite.
- "mime": the beta importMime action (full MIME fidelity, non-draft), then a $batch of PATCHes for read
  state and the marker. Needs Mail-Advanced.ReadWrite.All as well. Messages too big for one request go the
  JSON way.

A target folder's state in the checkpoint: its Graph id and the totalItemCount it last knew to be ours; when
the count has moved (a crash after a create and before its checkpoint, or mail delivered meanwhile) the
folder's markers are indexed. A message whose large attachments were still uploading when the worker died
carries a "pending" marker, and one importMime made whose marker PATCH never came carries none: both are
deleted when indexed and made again.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from typing import Any

from migrations_app.engines.base import (
    AUTH_FAILED,
    NOT_LICENSED,
    OVER_QUOTA,
    PROTOCOL,
    SKIP_REJECTED,
    TARGET_MISSING,
    PermanentError,
    RetryableError,
    SkippedItem,
)
from migrations_app.engines.graph.attachments import attach, file_json, spooled
from migrations_app.engines.graph.message import (
    EXCHANGE_MAX_MESSAGE_BYTES,
    INLINE_BYTES,
    MARKER,
    PENDING,
    SIMPLE_ATTACHMENT_BYTES,
    Attachment,
    marker_key,
    marker_value,
    message_json,
)
from migrations_app.engines.graph.mime_split import split_message
from migrations_app.engines.graph_client import NO_MAILBOX_MESSAGE, BatchItem, GraphClient, graph_error
from migrations_app.engines.pipeline.protocols import (
    ANSWERED,
    DRAFT,
    FLAGGED,
    SEEN,
    Folder,
    Item,
    Payload,
    TargetFolder,
    TargetItem,
    Written,
    message_id,
    subject_of,
)

IMPORT_MODES = ("json", "mime")
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


@dataclass(frozen=True)
class GraphPath:
    root: str  # a Graph well-known folder name, or "" for the top of the mailbox
    path: tuple[str, ...]  # display names below root

    @property
    def target(self) -> str:
        return "/".join((self.root or "msgfolderroot", *self.path))


def graph_path(folder: Folder) -> GraphPath:
    """A source folder's place in Exchange Online: INBOX and the special folders (by role, or by a usual
    name at the top) onto Graph's well-known folders, every other folder below the top, hierarchy kept."""
    parts = list(folder.path)
    if parts and parts[0].upper() == "INBOX":
        return GraphPath("inbox", tuple(parts[1:]))
    if folder.role and len(parts) <= 1:
        return GraphPath(folder.role, ())
    if parts and parts[0].lower() in WELL_KNOWN_BY_NAME:
        return GraphPath(WELL_KNOWN_BY_NAME[parts[0].lower()], tuple(parts[1:]))
    return GraphPath("", tuple(parts))


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

    def resolve(self, folder: GraphPath, *, create: bool = True) -> str | None:
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


def _marker_of(message: dict) -> str | None:
    props = message.get("singleValueExtendedProperties") or []
    return next((p["value"] for p in props if p["id"].lower() == MARKER.lower()), None)


class GraphWriter:
    """One mailbox in Exchange Online. Clones share the GraphClient (its token, its four request slots and
    the mailbox's upload budget are the mailbox's, whichever thread asks) and the folder resolver."""

    def __init__(self, graph_factory, user: str, *, mode: str, size_limit: int | None = None, shared=None):
        self.graph_factory = graph_factory
        self.user = user
        self.mode = mode
        self.limit = size_limit or EXCHANGE_MAX_MESSAGE_BYTES
        self.shared = shared if shared is not None else {"lock": threading.Lock()}

    @property
    def graph(self) -> GraphClient:
        return self.shared["graph"]

    def open(self) -> None:
        with self.shared["lock"]:
            if "graph" in self.shared:
                return
            graph = self.graph_factory()
            check_target(graph, self.user)
            self.shared["resolver"] = FolderResolver(graph, self.user)
            self.shared["graph"] = graph

    def close(self) -> None:
        pass  # the HTTP session is the endpoint's, kept for the next mailbox

    def clone(self) -> GraphWriter:
        return GraphWriter(
            self.graph_factory, self.user, mode=self.mode, size_limit=self.limit, shared=self.shared
        )

    def size_limit(self) -> int | None:
        return self.limit

    def mailbox_state(self) -> dict:
        """Kept in the checkpoint: the upload window (Graph's budget is the mailbox's, whatever the run)."""
        return {"uploads": self.graph.upload_state()} if "graph" in self.shared else {}

    def restore(self, state: dict) -> None:
        self.graph.restore_uploads((state or {}).get("uploads"))

    def compares_bytes(self) -> bool:
        return False  # Exchange's item sizes are not MIME sizes

    # --- folders --------------------------------------------------------------------------------------------

    def open_folder(self, folder: Folder, saved: dict | None, *, create: bool = True) -> TargetFolder | None:
        where = graph_path(folder)
        folder_id = self.shared["resolver"].resolve(where, create=create)
        if folder_id is None:
            return None
        count = int(self.graph.get(f"users/{self.user}/mailFolders/{folder_id}")["totalItemCount"])
        known = (saved or {}).get("target_count")
        state = {"target_id": folder_id, "target_count": count}
        return TargetFolder(folder_id, where.target, state, unknown=bool(count) and known != count)

    def index(self, target: TargetFolder) -> dict[str, list[Any]]:
        """Source key -> target ids from our markers. Half-made messages (a "pending" marker: the worker died
        while its attachments uploaded) are deleted, to be made again. In MIME mode, a message importMime
        made whose marker PATCH never came is indexed under "mid:<Message-ID>" and adopted (adopt())."""
        index: dict[str, list[Any]] = {}
        params = {
            "$select": "id,internetMessageId",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{MARKER}')",
            "$top": "250",
        }
        for message in self.graph.pages(f"users/{self.user}/mailFolders/{target.id}/messages", params):
            value = _marker_of(message)
            if value and value.startswith(PENDING):
                self.graph.request("DELETE", f"users/{self.user}/messages/{message['id']}", ok=(404,))
                continue
            key = marker_key(value)
            if key is None and self.mode == "mime" and message.get("internetMessageId"):
                key = f"mid:{message['internetMessageId']}"
            if key is not None:
                index.setdefault(key, []).append(message["id"])
        return index

    def adopt(self, target: TargetFolder, target_id: Any, item: Item) -> None:
        """A message importMime made whose read state and marker were never set: set them now."""
        self._patch([(item, target_id)])

    def close_folder(self, target: TargetFolder) -> dict:
        """Everything planned is on the target: its count now is ours, the next pass trusts it."""
        count = int(self.graph.get(f"users/{self.user}/mailFolders/{target.id}")["totalItemCount"])
        return {**target.state, "target_count": count}

    def note_written(self, target: TargetFolder, written: list[Written]) -> None:
        pass  # the marker says what is ours

    # --- writing --------------------------------------------------------------------------------------------

    def write(self, target: TargetFolder, items: list[tuple[Item, Payload]]) -> list[Written]:
        out: dict[int, Written] = {}
        large = [(i, p) for i, p in items if p.streamed or p.size >= INLINE_BYTES]
        small = [(i, p) for i, p in items if not (p.streamed or p.size >= INLINE_BYTES)]
        for item, payload in large:
            out[id(item)] = self._write_large(target, item, payload)
        for part in self._fitting(small):
            written = (
                self._write_mime(target, part) if self.mode == "mime" else self._write_json(target, part)
            )
            for w in written:
                out[id(w.item)] = w
        return [out[id(item)] for item, _ in items]

    def _fitting(self, items: list[tuple[Item, Payload]]):
        """The batch in parts that fit the mailbox's upload window: when room for the whole batch is more
        than a tenth of a window away (the end of a window whose uploads all went at its start) and the
        room there is now holds half the batch or more, that part goes now and the rest when room comes, so
        the end of a window is used rather than idled through. While the window slides (room coming every
        moment), the batch waits and goes whole: no request spent on splitting it."""
        graph = self.graph
        while items:
            whole = sum(p.size for _, p in items)
            if graph.upload_wait(whole) <= graph.upload_window / 10:
                yield items
                return
            room, taken, n = graph.upload_room(), 0, 0
            while n < len(items) and taken + items[n][1].size <= room:
                taken += items[n][1].size
                n += 1
            if n == 0 or 2 * taken < whole:
                yield items  # request() waits for the room
                return
            yield items[:n]
            items = items[n:]

    @staticmethod
    def _marker(item: Item, header: bytes) -> str:
        return marker_value(item.key, message_id(header) or "")

    def _create(self, target: TargetFolder, item: Item, raw: bytes) -> tuple[BatchItem, list[Attachment]]:
        data, large = message_json(
            raw,
            seen=SEEN in item.flags,
            flagged=FLAGGED in item.flags,
            answered=ANSWERED in item.flags,
            draft=DRAFT in item.flags,
            received=item.date,
        )
        marker = self._marker(item, raw)
        data["singleValueExtendedProperties"].append(
            {"id": MARKER, "value": (PENDING if large else "") + marker}
        )
        request = BatchItem(
            "POST", f"/users/{self.user}/mailFolders/{target.id}/messages", data, size=len(raw)
        )
        return request, large

    def _judge(self, item: Item, header: bytes, status: int, body) -> Written | None:
        """None when created; quota and the like stop the mailbox; another refusal skips the message."""
        if 200 <= status < 300:
            return None
        error = graph_error(body, status)
        if isinstance(error, RetryableError) or error.code in (
            OVER_QUOTA,
            TARGET_MISSING,
            NOT_LICENSED,
            AUTH_FAILED,
        ):
            raise error  # about the mailbox or the app, not this message
        skipped = SkippedItem(
            "", subject_of(header), item.size, f"{SKIP_REJECTED}: {error.message}", uid=None
        )
        if isinstance(item.id, int):
            skipped.uid = item.id
        return Written(item, skipped=skipped)

    def _write_json(self, target: TargetFolder, items: list[tuple[Item, Payload]]) -> list[Written]:
        requests = [self._create(target, item, payload.bytes())[0] for item, payload in items]
        out = []
        for (item, payload), (status, body) in zip(items, self.graph.batch(requests), strict=True):
            refused = self._judge(item, payload.header(), status, body)
            out.append(refused or Written(item, (body or {}).get("id"), size=payload.size))
        return out

    def _write_mime(self, target: TargetFolder, items: list[tuple[Item, Payload]]) -> list[Written]:
        requests = [
            BatchItem(
                "POST",
                f"/users/{self.user}/mailFolders/{target.id}/importMime",
                base64.b64encode(payload.bytes()).decode(),
                headers={"Content-Type": "text/plain"},
                size=payload.size,
            )
            for _, payload in items
        ]
        out, made = [], []
        for (item, payload), (status, body) in zip(
            items, self.graph.batch(requests, version="beta"), strict=True
        ):
            refused = self._judge(item, payload.header(), status, body)
            if refused:
                out.append(refused)
                continue
            made.append((item, body["id"], payload.header()))
            out.append(Written(item, body["id"], size=payload.size))
        self._patch([(item, target_id) for item, target_id, _ in made], {t: h for _, t, h in made})
        return out

    def _patch(self, made: list[tuple[Item, Any]], headers: dict | None = None) -> None:
        """Read state and the marker on messages importMime made (it cannot set them itself)."""
        for start in range(0, len(made), 20):
            requests = [
                BatchItem(
                    "PATCH",
                    f"/users/{self.user}/messages/{target_id}",
                    {
                        "isRead": SEEN in item.flags,
                        "singleValueExtendedProperties": [
                            {"id": MARKER, "value": self._marker(item, (headers or {}).get(target_id, b""))}
                        ],
                    },
                )
                for item, target_id in made[start : start + 20]
            ]
            for status, body in self.graph.batch(requests):
                if not 200 <= status < 300:
                    raise graph_error(body, status)

    def _write_large(self, target: TargetFolder, item: Item, payload: Payload) -> Written:
        """One big message, streamed (engines/graph/mime_split.py): the message created from its skeleton
        (headers, body, forwarded messages) with as many small files inline as the request holds and a
        pending marker, then every other file added (under 3 MB by a POST, up to 150 MB through an upload
        session in chunks read from its spool), then the final marker. Memory holds the skeleton and one
        chunk, never the whole message."""
        header = payload.header()
        with split_message(payload.open()) as split:
            data, extra = message_json(
                split.skeleton,
                seen=SEEN in item.flags,
                flagged=FLAGGED in item.flags,
                answered=ANSWERED in item.flags,
                draft=DRAFT in item.flags,
                received=item.date,
            )
            files = [*(spooled(a) for a in extra), *split.attachments]
            room = INLINE_BYTES - len(json.dumps(data))
            later = []
            for attachment in files:
                if attachment.size <= room and attachment.size < SIMPLE_ATTACHMENT_BYTES:
                    data.setdefault("attachments", []).append(file_json(attachment))
                    room -= attachment.size * 4 // 3 + 200
                else:
                    later.append(attachment)
            marker = self._marker(item, header)
            data["singleValueExtendedProperties"].append(
                {"id": MARKER, "value": (PENDING if later else "") + marker}
            )
            sent = INLINE_BYTES - max(room, 0)
            response = self.graph.request(
                "POST",
                f"users/{self.user}/mailFolders/{target.id}/messages",
                json=data,
                upload=sent,
                ok=(400, 413),
            )
            del data
            if response.status_code >= 400:
                return self._judge(item, header, response.status_code, response.json())
            created = response.json()["id"]
            for attachment in later:
                attach(self.graph, self.user, created, attachment)
        if later:
            self.graph.request(
                "PATCH",
                f"users/{self.user}/messages/{created}",
                json={"singleValueExtendedProperties": [{"id": MARKER, "value": marker}]},
            )
        return Written(item, created, size=payload.size)

    # --- the delta ------------------------------------------------------------------------------------------

    def inventory(self, target: TargetFolder) -> list[TargetItem]:
        params = {
            "$select": "id,internetMessageId,isRead,flag,subject",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{MARKER}')",
            "$top": "250",
        }
        out = []
        for message in self.graph.pages(f"users/{self.user}/mailFolders/{target.id}/messages", params):
            key = marker_key(_marker_of(message))
            flags = set()
            if message.get("isRead"):
                flags.add(SEEN)
            if (message.get("flag") or {}).get("flagStatus") == "flagged":
                flags.add(FLAGGED)
            out.append(
                TargetItem(
                    message["id"],
                    key or f"mid:{message.get('internetMessageId') or ''}",
                    frozenset(flags),
                    ours=key is not None,
                    subject=message.get("subject") or "",
                )
            )
        return out

    def comparable_flags(self, target: TargetFolder, flags: frozenset[str]) -> frozenset[str]:
        return flags & {SEEN, FLAGGED}

    def set_flags(
        self, target: TargetFolder, changes: list[tuple[Any, frozenset[str], frozenset[str]]]
    ) -> None:
        requests = []
        for target_id, plus, minus in changes:
            patch: dict[str, Any] = {}
            if SEEN in plus or SEEN in minus:
                patch["isRead"] = SEEN in plus
            if FLAGGED in plus or FLAGGED in minus:
                patch["flag"] = {"flagStatus": "flagged" if FLAGGED in plus else "notFlagged"}
            if patch:
                requests.append(BatchItem("PATCH", f"/users/{self.user}/messages/{target_id}", patch))
        self._batches(requests)

    def move(self, source: TargetFolder, destination: TargetFolder, ids: list[Any]) -> None:
        self._batches(
            [
                BatchItem("POST", f"/users/{self.user}/messages/{i}/move", {"destinationId": destination.id})
                for i in ids
            ]
        )

    def delete(self, target: TargetFolder, ids: list[Any]) -> None:
        self._batches(
            [BatchItem("DELETE", f"/users/{self.user}/messages/{i}", None) for i in ids], missing_ok=True
        )

    def _batches(self, requests: list[BatchItem], *, missing_ok: bool = False) -> None:
        for start in range(0, len(requests), 20):
            for status, body in self.graph.batch(requests[start : start + 20]):
                if 200 <= status < 300 or (missing_ok and status == 404):
                    continue
                raise graph_error(body, status)

    def totals(self, target: TargetFolder) -> tuple[int, int]:
        info = self.graph.get(f"users/{self.user}/mailFolders/{target.id}")
        return int(info.get("totalItemCount", 0)), int(info.get("sizeInBytes", 0))


def check_target(graph: GraphClient, user: str) -> str:
    """The user exists and has a mailbox Graph can reach; returns its kind (user, shared, room, ...)."""
    graph.get(f"users/{user}", params={"$select": "id,userPrincipalName,mail"})
    try:
        settings = graph.get(f"users/{user}/mailboxSettings")
    except PermanentError as exc:
        if "MailboxNotEnabledForRESTAPI" in exc.message or exc.code == NOT_LICENSED:
            raise PermanentError(NOT_LICENSED, "target: " + NO_MAILBOX_MESSAGE.format(user=user)) from exc
        raise
    return settings.get("userPurpose") or "user"


def import_mode(options: dict) -> str:
    mode = options.get("import_mode", "json")
    if mode not in IMPORT_MODES:
        raise PermanentError(PROTOCOL, f"target: import_mode must be one of {', '.join(IMPORT_MODES)}")
    return mode
