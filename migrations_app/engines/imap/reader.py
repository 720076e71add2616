"""The IMAP source reader: folders with their roles, new messages above a UID cursor in pages, keys from the
Message-ID header, bodies by UID FETCH (large ones in parts into a spool file), inventories for the delta."""

from __future__ import annotations

from collections.abc import Iterator

from imapclient import IMAPClient

from migrations_app.engines.base import EndpointSpec
from migrations_app.engines.imap.client import (
    FETCH_CHUNK,
    chunks,
    close_client,
    connect,
    fetch_bodies,
    fetch_items,
    fetch_keys,
    fetch_subjects,
    folder_totals,
    header_field,
    personal_namespace,
    subject_of,
    uid_set,
)
from migrations_app.engines.pipeline.protocols import Folder, Item, Page, Payload, item_key, message_id

# SPECIAL-USE (RFC 6154) flags of a top-level folder -> its role.
ROLE_BY_FLAG = {
    b"\\sent": "sentitems",
    b"\\trash": "deleteditems",
    b"\\drafts": "drafts",
    b"\\junk": "junkemail",
    b"\\archive": "archive",
}


def _flags(raw: tuple) -> frozenset[str]:
    return frozenset(
        f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f)
        for f in raw
        if f.lower() != b"\\recent"
    )


class ImapReader:
    def __init__(
        self,
        endpoint: EndpointSpec,
        user: str,
        *,
        timeout: float = 60,
        page_items: int = FETCH_CHUNK,
        part_bytes: int = 4 * 1024 * 1024,
    ):
        self.endpoint = endpoint
        self.user = user
        self.timeout = timeout
        self.page_items = page_items
        self.part_bytes = part_bytes
        self.client: IMAPClient | None = None
        self.selected: str | None = None
        self.info: dict[str, dict] = {}

    def open(self) -> None:
        if self.client is None:
            self.client = connect(self.endpoint, self.user, side="source", timeout=self.timeout)

    def close(self) -> None:
        close_client(self.client)
        self.client = None
        self.selected = None

    def clone(self) -> ImapReader:
        return ImapReader(
            self.endpoint,
            self.user,
            timeout=self.timeout,
            page_items=self.page_items,
            part_bytes=self.part_bytes,
        )

    def _select(self, folder: Folder) -> dict:
        if self.selected != folder.key:
            self.info[folder.key] = self.client.select_folder(folder.key, readonly=True)
            self.selected = folder.key
        return self.info[folder.key]

    # --- folders --------------------------------------------------------------------------------------------

    def folders(self) -> list[Folder]:
        client = self.client
        namespace = personal_namespace(client)
        subscribed = {name for _, _, name in client.list_sub_folders()}
        out = []
        for flags, delimiter, name in client.list_folders():
            lowered = {f.lower() for f in flags}
            if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
                continue
            separator = namespace.separator or (
                delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            )
            relative = (
                name[len(namespace.prefix) :]
                if namespace.prefix and name.startswith(namespace.prefix)
                else name
            )
            parts = tuple(p for p in (relative.split(separator) if separator else [relative]) if p)
            if not parts:
                continue  # the namespace prefix itself
            role = ""
            if parts[0].upper() == "INBOX":
                parts = ("INBOX", *parts[1:])
                role = "inbox" if len(parts) == 1 else ""
            elif len(parts) == 1 and lowered & set(ROLE_BY_FLAG):
                role = ROLE_BY_FLAG[next(iter(lowered & set(ROLE_BY_FLAG)))]
            out.append(Folder(key=name, path=parts, role=role, subscribed=name in subscribed, label=name))
        # INBOX first (it is what people look at), then parents before their children.
        out.sort(key=lambda f: (f.key.upper() != "INBOX", f.key))
        return out

    def generation(self, folder: Folder) -> dict:
        self.selected = None  # select afresh: UIDNEXT and EXISTS as they are now
        return {"uidvalidity": self._select(folder)[b"UIDVALIDITY"]}

    # --- listing --------------------------------------------------------------------------------------------

    def changes(self, folder: Folder, cursor) -> Iterator[Page]:
        """New messages above the cursor (a UID), a page of at most page_items at a time. The last page's
        cursor is UIDNEXT - 1, so a folder whose newest messages were expunged is not looked at again."""
        info = self._select(folder)
        last = int(cursor or 0)
        uidnext = info.get(b"UIDNEXT") or 0
        end = max(last, uidnext - 1)
        if not info[b"EXISTS"] or (uidnext and uidnext - 1 <= last):
            yield Page([], end, last=True)
            return
        # "n:*" always matches the highest UID even when it is below n, hence the filter.
        uids = sorted(u for u in self.client.search(["UID", f"{last + 1}:*"]) if u > last)
        if not uids:
            yield Page([], end, last=True)
            return
        pages = list(chunks(uids, self.page_items))
        for number, chunk in enumerate(pages):
            self._select(folder)
            fetched = fetch_items(self.client, uid_set(chunk), [b"RFC822.SIZE", b"FLAGS", b"INTERNALDATE"])
            wanted = set(chunk)
            items = [
                Item(uid, data[b"RFC822.SIZE"], _flags(data[b"FLAGS"]), data[b"INTERNALDATE"])
                for uid, data in sorted(fetched.items())
                if uid in wanted and b"RFC822.SIZE" in data  # not an unsolicited FETCH for another message
            ]
            final = number == len(pages) - 1
            yield Page(items, max(chunk[-1], end) if final else chunk[-1], last=final)

    def keys(self, folder: Folder, items: list[Item]) -> None:
        self._select(folder)
        by_uid = {item.id: item for item in items}
        no_id: list[int] = []
        for chunk in chunks(sorted(by_uid), FETCH_CHUNK):
            fetched = fetch_items(
                self.client, uid_set(chunk), [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)]"]
            )
            for uid, data in fetched.items():
                item = by_uid.get(uid)
                if item is None:
                    continue
                header = header_field(data, b"BODY[HEADER.FIELDS") or b""
                item.subject = subject_of(header)
                mid = message_id(header)
                if mid:
                    item.key = f"m:{mid}:{item.size}"
                else:
                    no_id.append(uid)
        for chunk in chunks(no_id, 500):
            for uid, data in fetch_items(self.client, uid_set(chunk), [b"BODY.PEEK[HEADER]"]).items():
                if uid in by_uid and b"BODY[HEADER]" in data:
                    by_uid[uid].key = item_key(data[b"BODY[HEADER]"] or b"", by_uid[uid].size)

    def fetch(
        self, folder: Folder, items: list[Item], large_item_bytes: int
    ) -> Iterator[tuple[Item, Payload]]:
        info = self._select(folder)
        del info
        small = [item for item in items if item.size < large_item_bytes]
        if small:
            bodies = fetch_bodies(self.client, uid_set([item.id for item in small]))
            for item in small:
                body = bodies.get(item.id)
                if body is not None:  # None: expunged since listing, nothing to copy
                    yield item, Payload(body)
        for item in items:
            if item.size >= large_item_bytes:
                payload = self._fetch_large(item)
                if payload is not None:
                    yield item, payload

    def _fetch_large(self, item: Item) -> Payload | None:
        """In parts of part_bytes into a spool file (memory up to part_bytes, then disk): a 200 MB attachment
        never sits in memory whole."""
        payload, spool = Payload.spooled(self.part_bytes)
        offset = 0
        while True:
            fetched = self.client.fetch([item.id], [f"BODY.PEEK[]<{offset}.{self.part_bytes}>".encode()])
            if item.id not in fetched:
                payload.close()
                return None  # expunged since listing
            part = header_field(fetched[item.id], b"BODY[]<") or b""
            spool.write(part)
            offset += len(part)
            if len(part) < self.part_bytes:
                break
        payload.done_writing()
        return payload

    # --- inventories ----------------------------------------------------------------------------------------

    def inventory(self, folder: Folder) -> list[Item]:
        self.selected = None
        if not self._select(folder)[b"EXISTS"]:
            return []
        data = {
            u: d
            for u, d in fetch_items(self.client, "1:*", [b"RFC822.SIZE", b"FLAGS"]).items()
            if b"FLAGS" in d
        }
        keys = fetch_keys(self.client, sorted(data), {u: d[b"RFC822.SIZE"] for u, d in data.items()})
        return [
            Item(uid, data[uid][b"RFC822.SIZE"], _flags(data[uid][b"FLAGS"]), key=keys[uid])
            for uid in sorted(keys)
        ]

    def totals(self, folder: Folder) -> tuple[int, int]:
        self.selected = None
        return folder_totals(self.client, folder.key)

    def larger_than(self, limit: int, *, examples: int = 5) -> tuple[int, list[tuple[str, int, str]]]:
        """Messages over `limit` bytes in every folder (IMAP SEARCH LARGER, the server's work): how many, and
        the biggest few as (folder, size, subject) for the person who must deal with them."""
        found: list[tuple[str, int, str]] = []
        count = 0
        for folder in self.folders():
            self._select(folder)
            uids = self.client.search(["LARGER", limit])
            if not uids:
                continue
            count += len(uids)
            sizes = fetch_items(self.client, uid_set(sorted(uids)[:200]), [b"RFC822.SIZE"])
            biggest = sorted(sizes, key=lambda uid: -sizes[uid][b"RFC822.SIZE"])[:examples]
            subjects = fetch_subjects(self.client, biggest)
            found += [(folder.label, sizes[u][b"RFC822.SIZE"], subjects.get(u, "")) for u in biggest]
        found.sort(key=lambda f: -f[1])
        return count, found[:examples]
