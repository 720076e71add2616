"""The IMAP target writer: folders created with the target's separator and namespace, MULTIAPPEND (APPEND one
by one when one message is refused), large messages streamed from their spool file, and what the portal
wrote remembered as APPENDUID ranges, so the cutover only ever moves or deletes its own copies.

A folder's state in the checkpoint: the target's UIDVALIDITY, the "watermark" (its UIDNEXT before this pass's
unrecorded appends; target UIDs at or above it after a crash may be ours, so they are indexed), and "ours"
(ranges of target UIDs the portal appended, from UIDPLUS's APPENDUID; empty on a server without UIDPLUS,
where the cutover then deletes nothing).
"""

from __future__ import annotations

import re
from contextlib import suppress
from typing import Any

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors

from migrations_app.engines.base import EndpointSpec
from migrations_app.engines.imap.client import (
    Namespace,
    append_stream,
    chunks,
    close_client,
    connect,
    fetch_items,
    fetch_keys,
    flags_for_target,
    folder_totals,
    personal_namespace,
    raise_if_fatal,
    rejected,
    response_text,
    size_limit,
    unselect,
)
from migrations_app.engines.pipeline.protocols import Folder, Item, Payload, TargetFolder, TargetItem, Written

_APPENDUID = re.compile(r"\[APPENDUID \d+ ([\d:,]+)\]", re.IGNORECASE)


def _uids(text: str) -> list[int]:
    match = _APPENDUID.search(text or "")
    if not match:
        return []
    out: list[int] = []
    for part in match.group(1).split(","):
        low, _, high = part.partition(":")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _add_ranges(ranges: list[list[int]], uids: list[int]) -> list[list[int]]:
    merged = [list(r) for r in ranges]
    for uid in sorted(uids):
        if merged and merged[-1][0] <= uid <= merged[-1][1]:
            continue
        if merged and merged[-1][1] + 1 == uid:
            merged[-1][1] = uid
        else:
            merged.append([uid, uid])
    merged.sort()
    out: list[list[int]] = []
    for low, high in merged:
        if out and low <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], high)
        else:
            out.append([low, high])
    return out


def _in(uid: int, ranges: list[list[int]]) -> bool:
    return any(low <= uid <= high for low, high in ranges)


def _bytes_flags(flags: frozenset[str]) -> tuple:
    return tuple(f.encode() for f in sorted(flags))


class ImapWriter:
    def __init__(self, endpoint: EndpointSpec, user: str, *, timeout: float = 60):
        self.endpoint = endpoint
        self.user = user
        self.timeout = timeout
        self.client: IMAPClient | None = None
        self._namespace: Namespace | None = None
        self._existing: set[str] | None = None

    def open(self) -> None:
        if self.client is None:
            self.client = connect(self.endpoint, self.user, side="target", timeout=self.timeout)
            self.multiappend = self.client.has_capability("MULTIAPPEND")

    def close(self) -> None:
        close_client(self.client)
        self.client = None

    def clone(self) -> ImapWriter:
        return ImapWriter(self.endpoint, self.user, timeout=self.timeout)

    def size_limit(self) -> int | None:
        return size_limit(self.endpoint, self.client)

    def compares_bytes(self) -> bool:
        return True

    # --- folders --------------------------------------------------------------------------------------------

    def target_name(self, folder: Folder) -> str:
        """The source folder's path under the target's namespace and separator. A name part that holds the
        target's separator (legal on a '/' server, not on a '.' one) gets '_' instead."""
        if self._namespace is None:
            self._namespace = personal_namespace(self.client)
        target = self._namespace
        separator = target.separator or "/"
        parts = (
            [p.replace(target.separator, "_") for p in folder.path] if target.separator else list(folder.path)
        )
        if parts[0].upper() == "INBOX":  # a child of INBOX stays a child of INBOX, whatever the prefix
            return separator.join(["INBOX", *parts[1:]])
        return target.prefix + separator.join(parts)

    def open_folder(self, folder: Folder, saved: dict | None, *, create: bool = True) -> TargetFolder | None:
        name = self.target_name(folder)
        if self._existing is None:
            self._existing = {n for _, _, n in self.client.list_folders()}
        if name not in self._existing:
            if not create:
                return None
            try:
                self.client.create_folder(name)
            except imap_errors.IMAPClientError as exc:
                if "ALREADYEXISTS" not in str(exc).upper():
                    raise
            self._existing.add(name)
            if folder.subscribed:
                with suppress(imap_errors.IMAPClientError):
                    self.client.subscribe_folder(name)
        info = self.client.select_folder(name)
        unselect(self.client)  # STATUS later must not run on a selected mailbox
        uidvalidity, uidnext, exists = info[b"UIDVALIDITY"], info.get(b"UIDNEXT"), info[b"EXISTS"]
        permanent = {f.lower() for f in info.get(b"PERMANENTFLAGS", ())}
        saved = saved or {}
        same = saved.get("target_uidvalidity") == uidvalidity
        index_from = None
        if not same:
            index_from = 1 if exists else None
        elif saved.get("watermark") is None or uidnext != saved["watermark"]:
            index_from = saved.get("watermark") or 1
        state = {
            "target_uidvalidity": uidvalidity,
            "watermark": uidnext,
            "ours": [list(r) for r in saved.get("ours", [])] if same else [],
        }
        extra = {"permanent": permanent, "any_keyword": b"\\*" in permanent, "index_from": index_from}
        return TargetFolder(name, name, state, unknown=index_from is not None and bool(exists), extra=extra)

    def index(self, target: TargetFolder) -> dict[str, list[Any]]:
        start = target.extra.get("index_from") or 1
        info = self.client.select_folder(target.id, readonly=True)
        try:
            if not info[b"EXISTS"]:
                return {}
            uids = [u for u in self.client.search(["UID", f"{start}:*"]) if u >= start]
            index: dict[str, list[Any]] = {}
            for uid, key in fetch_keys(self.client, uids).items():
                index.setdefault(key, []).append(uid)
            return index
        finally:
            unselect(self.client)

    def close_folder(self, target: TargetFolder) -> dict:
        status = self.client.folder_status(target.id, [b"UIDNEXT", b"UIDVALIDITY"])
        return {**target.state, "watermark": status[b"UIDNEXT"], "target_uidvalidity": status[b"UIDVALIDITY"]}

    def note_written(self, target: TargetFolder, written: list[Written]) -> None:
        uids = [w.target_id for w in written if w.ok and isinstance(w.target_id, int)]
        if uids:
            target.state["ours"] = _add_ranges(target.state.get("ours", []), uids)

    # --- writing --------------------------------------------------------------------------------------------

    def _flags(self, target: TargetFolder, item: Item) -> tuple:
        return flags_for_target(
            _bytes_flags(item.flags), target.extra["permanent"], target.extra["any_keyword"]
        )

    def write(self, target: TargetFolder, items: list[tuple[Item, Payload]]) -> list[Written]:
        whole = [(item, payload) for item, payload in items if not payload.streamed]
        out: dict[int, Written] = {}
        if self.multiappend and len(whole) > 1:
            try:
                typ, data = self.client.multiappend(
                    target.id,
                    [{"msg": p.bytes(), "flags": self._flags(target, i), "date": i.date} for i, p in whole],
                )
                if typ != "OK":  # imapclient 4.1 returns a NO here rather than raising it
                    raise imap_errors.IMAPClientError(f"MULTIAPPEND failed: {typ} {response_text(data)}")
                uids = _uids(response_text(data))
                for n, (item, payload) in enumerate(whole):
                    uid = uids[n] if len(uids) == len(whole) else None
                    out[id(item)] = Written(item, uid, size=payload.size)
                whole = []
            except imap_errors.IMAPClientError as exc:
                raise_if_fatal(exc)
                # MULTIAPPEND is all or nothing: one refused message refuses the batch. Find it one by one.
        for item, payload in items:
            if id(item) in out:
                continue
            try:
                if payload.streamed:
                    text = append_stream(
                        self.client,
                        target.id,
                        self._flags(target, item),
                        item.date,
                        payload.open(),
                        payload.size,
                    )
                else:
                    text = self.client.append(
                        target.id, payload.bytes(), self._flags(target, item), item.date
                    )
                text = response_text(text)
            except imap_errors.IMAPClientError as exc:
                raise_if_fatal(exc)
                skipped = rejected(target.name, item.id, item.size, payload.header(), exc)
                out[id(item)] = Written(item, skipped=skipped)
                continue
            uids = _uids(text)
            out[id(item)] = Written(item, uids[0] if uids else None, size=payload.size)
        return [out[id(item)] for item, _ in items]

    # --- the delta ------------------------------------------------------------------------------------------

    def inventory(self, target: TargetFolder) -> list[TargetItem]:
        info = self.client.select_folder(target.id, readonly=True)
        try:
            if not info[b"EXISTS"]:
                return []
            data = {
                u: d
                for u, d in fetch_items(self.client, "1:*", [b"RFC822.SIZE", b"FLAGS"]).items()
                if b"FLAGS" in d
            }
            keys = fetch_keys(self.client, sorted(data), {u: d[b"RFC822.SIZE"] for u, d in data.items()})
            ours = target.state.get("ours", [])
            return [
                TargetItem(
                    uid,
                    keys[uid],
                    frozenset(f.decode("utf-8", "replace") for f in data[uid][b"FLAGS"]),
                    ours=_in(uid, ours),
                )
                for uid in sorted(keys)
            ]
        finally:
            unselect(self.client)

    def comparable_flags(self, target: TargetFolder, flags: frozenset[str]) -> frozenset[str]:
        kept = flags_for_target(_bytes_flags(flags), target.extra["permanent"], target.extra["any_keyword"])
        return frozenset(f.decode() for f in kept)

    def set_flags(
        self, target: TargetFolder, changes: list[tuple[Any, frozenset[str], frozenset[str]]]
    ) -> None:
        r"""+FLAGS/-FLAGS, never a FLAGS replace: a \Deleted the user set on the target is left alone."""
        add: dict[bytes, list[int]] = {}
        remove: dict[bytes, list[int]] = {}
        for uid, plus, minus in changes:
            for flag in plus:
                add.setdefault(flag.encode(), []).append(uid)
            for flag in minus:
                remove.setdefault(flag.encode(), []).append(uid)
        self.client.select_folder(target.id)
        try:
            for flag, uids in add.items():
                for chunk in chunks(uids, 1000):
                    self.client.add_flags(chunk, [flag], silent=True)
            for flag, uids in remove.items():
                for chunk in chunks(uids, 1000):
                    self.client.remove_flags(chunk, [flag], silent=True)
        finally:
            unselect(self.client)

    def move(self, source: TargetFolder, destination: TargetFolder, ids: list[Any]) -> None:
        """UID MOVE (RFC 6851) where the server has it; else UID COPY, then \\Deleted and UID EXPUNGE of just
        those UIDs (never a plain EXPUNGE, which would purge the user's own deleted messages too)."""
        self.client.select_folder(source.id)
        try:
            if self.client.has_capability("MOVE"):
                self.client.move(ids, destination.id)
            else:
                self.client.copy(ids, destination.id)
                self._expunge(ids)
        finally:
            unselect(self.client)

    def delete(self, target: TargetFolder, ids: list[Any]) -> None:
        self.client.select_folder(target.id)
        try:
            self._expunge(ids)
        finally:
            unselect(self.client)

    def _expunge(self, ids: list[Any]) -> None:
        for chunk in chunks(ids, 1000):
            self.client.add_flags(chunk, [b"\\Deleted"], silent=True)
            if self.client.has_capability("UIDPLUS"):
                self.client.uid_expunge(chunk)

    def totals(self, target: TargetFolder) -> tuple[int, int]:
        return folder_totals(self.client, target.id)
