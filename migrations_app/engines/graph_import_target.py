"""The exchange engine's target writer: Exchange Online through Microsoft Graph's mailbox import API. Plain Python.

- The mailbox id from the user: GET /users/{user}/settings/exchange -> primaryMailboxId (no licensed mailbox:
  NOT_LICENSED, as the graph engine says it).
- Folders: well-known ones by their names (inbox, sentitems, calendar, contacts, tasks, notes, ...) under
  /admin/exchange/mailboxes/{id}/folders/{name}; the others found or created with their class (`type`) and
  hierarchy through childFolders.
- Items: createImportSession gives a pre-authenticated importUrl with an expiry; the session belongs to the
  mailbox (the folder is named in each POST), so one session serves every folder and is renewed `margin` seconds
  before it expires, or at once when the URL is refused. One POST per item, {"FolderId", "Mode", "Data"}; the
  returned itemId is what the checkpoint keeps (for dedupe, updates and deletes at cutover).
- Limits: GraphClient's four concurrent requests per mailbox, 429 / 503 with Retry-After.
- After a crash: items imported but not yet checkpointed are recognised by PR_SEARCH_KEY (0x300B), which the
  FastTransfer stream carries, read back from the folder's mailboxItems as a single-value extended property.

docs/adr/014-exchange-engine.md records the calls, the permissions (MailboxItem.ImportExport.All,
MailboxFolder.ReadWrite.All, User.Read.All) and what only a real tenant can confirm.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections import defaultdict
from urllib.parse import quote

from migrations_app.engines.base import AUTH_FAILED, PROTOCOL, SKIP_CORRUPT, PermanentError, SkippedItem
from migrations_app.engines.graph_client import NO_MAILBOX_MESSAGE, GraphClient, graph_error
from migrations_app.engines.pipeline.protocols import TargetFolder, TargetItem, Written

MAX_ITEM_BYTES = 150 * 1024 * 1024  # Exchange Online's largest item
FOLDER_CLASS_NAMES = {
    "IPF.Appointment": "calendar",
    "IPF.Contact": "contacts",
    "IPF.Task": "tasks",
    "IPF.StickyNote": "notes",
    "IPF.Journal": "journal",
}


def folder_class_name(folder_class: str) -> str:
    """mail, calendar, contacts, tasks, notes or journal: what the mailbox page counts by."""
    return FOLDER_CLASS_NAMES.get(".".join((folder_class or "IPF.Note").split(".")[:2]), "mail")


SEARCH_KEY_PROPERTY = "Binary 0x300B"
GRAPH_WELL_KNOWN = frozenset(
    {
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
    }
)
# Exchange 2013's English folder names at the top of the store -> Graph's well-known folder names. The reader
# also asks Exchange which folders are its distinguished ones, so a localised store maps the same way.
WELL_KNOWN_BY_NAME = {
    "inbox": "inbox",
    "sent items": "sentitems",
    "deleted items": "deleteditems",
    "drafts": "drafts",
    "junk e-mail": "junkemail",
    "junk email": "junkemail",
    "outbox": "outbox",
    "calendar": "calendar",
    "contacts": "contacts",
    "tasks": "tasks",
    "notes": "notes",
    "journal": "journal",
}


class GraphImportTarget:
    def __init__(self, graph: GraphClient, user: str, *, version: str = "v1.0", margin: float = 120.0):
        self.graph = graph
        self.user = user
        self.version = version
        self.margin = margin
        self._user_path = quote(user, safe="@'+")
        self._mailbox_id: str | None = None
        self._session: tuple[str, float] | None = None  # (importUrl, expiry epoch)
        self._session_lock = threading.Lock()
        self._folder_ids: dict[tuple, str] = {}
        self.stats = defaultdict(int)

    # --- the mailbox -------------------------------------------------------------------------------------------

    def mailbox_id(self) -> str:
        if self._mailbox_id is None:
            response = self.graph.request(
                "GET", f"users/{self._user_path}/settings/exchange", version=self.version, ok=(404,)
            )
            if response.status_code == 404:
                error = graph_error(response)
                if error.code == "NOT_LICENSED" or "MailboxNotEnabled" in response.text:
                    raise PermanentError(
                        "NOT_LICENSED", "target: " + NO_MAILBOX_MESSAGE.format(user=self.user)
                    )
                raise PermanentError("TARGET_MISSING", f"target: no such user {self.user} in the tenant")
            mailbox_id = response.json().get("primaryMailboxId")
            if not mailbox_id:
                raise PermanentError("TARGET_MISSING", "target: " + NO_MAILBOX_MESSAGE.format(user=self.user))
            self._mailbox_id = mailbox_id
        return self._mailbox_id

    def _path(self, tail: str) -> str:
        return f"admin/exchange/mailboxes/{quote(self.mailbox_id(), safe=':@')}/{tail}"

    # --- folders -----------------------------------------------------------------------------------------------

    def resolve_folder(
        self, path: tuple[str, ...], folder_class: str, *, well_known: str = "", create: bool = True
    ) -> str | None:
        """The target folder id for a source folder path (created, with its parents, when missing)."""
        key = (path, well_known)
        if key in self._folder_ids:
            return self._folder_ids[key]
        if well_known or (len(path) == 1 and path[0].lower() in WELL_KNOWN_BY_NAME):
            name = well_known or WELL_KNOWN_BY_NAME[path[0].lower()]
            folder_id = self.graph.get(self._path(f"folders/{name}"), version=self.version)["id"]
        else:
            parent = None
            if len(path) > 1:
                parent = self.resolve_folder(path[:-1], "IPF.Note", create=create)
                if parent is None:
                    return None
            folder_id = self._child(parent, path[-1], folder_class, create)
            if folder_id is None:
                return None
        self._folder_ids[key] = folder_id
        return folder_id

    def _child(self, parent: str | None, name: str, folder_class: str, create: bool) -> str | None:
        collection = f"folders/{parent}/childFolders" if parent else "folders"
        for folder in self._pages(self._path(collection)):
            if folder.get("displayName") == name:
                return folder["id"]
        if not create:
            return None
        response = self.graph.request(
            "POST",
            self._path(collection),
            version=self.version,
            json={"displayName": name, "type": folder_class or "IPF.Note"},
        )
        self.stats["folders_created"] += 1
        return response.json()["id"]

    def folder_count(self, folder_id: str) -> int:
        return int(
            self.graph.get(self._path(f"folders/{folder_id}"), version=self.version).get("totalItemCount", 0)
        )

    def search_keys(self, folder_id: str) -> dict[str, list[str]]:
        """PR_SEARCH_KEY (base64) -> target item ids in the folder: what a crash may have left unrecorded."""
        out: dict[str, list[str]] = defaultdict(list)
        params = {"$expand": f"singleValueExtendedProperties($filter=id eq '{SEARCH_KEY_PROPERTY}')"}
        for item in self._pages(self._path(f"folders/{folder_id}/items"), params):
            for prop in item.get("singleValueExtendedProperties") or []:
                if prop.get("id", "").lower() == SEARCH_KEY_PROPERTY.lower():
                    out[prop.get("value", "")].append(item["id"])
        return out

    def _pages(self, path: str, params: dict | None = None):
        page = self.graph.get(path, version=self.version, params=params)
        while True:
            yield from page.get("value", [])
            link = page.get("@odata.nextLink")
            if not link:
                return
            page = self.graph.get(link)

    # --- import ------------------------------------------------------------------------------------------------

    def _import_url(self, *, renew: bool = False) -> str:
        with self._session_lock:
            if renew or self._session is None or self._session[1] - self.margin < time.time():
                response = self.graph.request("POST", self._path("createImportSession"), version=self.version)
                body = response.json()
                expiry = dt.datetime.fromisoformat(
                    body["expirationDateTime"].replace("Z", "+00:00")
                ).timestamp()
                self._session = (body["importUrl"], expiry)
                self.stats["import_sessions"] += 1
            return self._session[0]

    def import_item(self, folder_id: str, data: bytes, *, item_id: str | None = None) -> tuple[str, str]:
        """One POST to the importUrl: a new item, or (item_id given) the new version of one imported before.
        Returns (itemId, changeKey)."""
        body = {
            "FolderId": folder_id,
            "Mode": "update" if item_id else "create",
            "Data": base64.b64encode(data).decode(),
        }
        if item_id:
            body["ItemId"] = item_id
        renewed = False
        while True:
            url = self._import_url(renew=renewed)
            response = self.graph.request(
                "POST", url, json=body, authorize=False, ok=(401, 403), upload=len(data)
            )
            if response.status_code in (401, 403):
                if renewed:
                    raise PermanentError(AUTH_FAILED, "target: the import session was refused twice")
                renewed = True  # expired early, or revoked: a new session, once
                self.stats["sessions_renewed_on_refusal"] += 1
                continue
            answer = {k.lower(): v for k, v in response.json().items()}
            if not answer.get("itemid"):
                raise PermanentError(PROTOCOL, "target: the import answered without an itemId")
            self.stats["imports"] += 1
            return answer["itemid"], answer.get("changekey", "")

    def delete_item(self, item_id: str) -> None:
        """The cutover delta's deletion (delete_policy copied): an item deleted or moved away on the source."""
        self.graph.request("DELETE", f"users/{self._user_path}/messages/{quote(item_id)}", ok=(404,))
        self.stats["deletes"] += 1


# --- the pipeline's TargetWriter -----------------------------------------------------------------------------


class GraphImportWriter:
    """engines.pipeline's TargetWriter over Graph mailbox import. Clones share one GraphImportTarget (the
    mailbox's GraphClient with its four request slots, the import session, the folder ids).

    A folder's state (saved in the checkpoint as its target_state): the target folder id, its item count when
    last known to be ours, the folder's class for per-class progress, and `map`: source item id -> target item
    id, so an item changed on the source is imported again in place ("Mode": "update") and the delta knows
    which target items are the portal's."""

    def __init__(self, target_factory, *, size_limit: int = MAX_ITEM_BYTES, shared=None):
        self.target_factory = target_factory
        self.limit = size_limit
        self.shared = shared if shared is not None else {"lock": threading.Lock()}

    @property
    def target(self) -> GraphImportTarget:
        return self.shared["target"]

    def open(self) -> None:
        with self.shared["lock"]:
            if "target" not in self.shared:
                target = self.target_factory()
                target.mailbox_id()  # TARGET_MISSING when not provisioned or unlicensed
                self.shared["target"] = target

    def close(self) -> None:
        pass

    def clone(self) -> GraphImportWriter:
        return GraphImportWriter(self.target_factory, size_limit=self.limit, shared=self.shared)

    def size_limit(self) -> int | None:
        return self.limit

    def compares_bytes(self) -> bool:
        return False  # a FastTransfer stream's size is not the item's size in the mailbox

    def open_folder(self, folder, saved: dict | None, *, create: bool = True) -> TargetFolder | None:
        well_known = folder.role if folder.role in GRAPH_WELL_KNOWN else ""
        folder_id = self.target.resolve_folder(
            folder.path, folder.folder_class, well_known=well_known, create=create
        )
        if folder_id is None:
            return None
        count = self.target.folder_count(folder_id)
        saved = saved or {}
        state = {
            "target_id": folder_id,
            "target_count": count,
            "class": folder_class_name(folder.folder_class),
            "map": dict(saved.get("map", {})),
        }
        unknown = bool(count) and saved.get("target_count") != count
        return TargetFolder(folder_id, "/".join(folder.path), state, unknown=unknown)

    def index(self, target: TargetFolder) -> dict[str, list]:
        return {f"sk:{key}": ids for key, ids in self.target.search_keys(target.id).items()}

    def write(self, target: TargetFolder, items: list) -> list[Written]:
        out = []
        for item, payload in items:
            if getattr(payload, "reason", None) is not None:  # ews_source.ExportFailed
                out.append(
                    Written(
                        item,
                        skipped=SkippedItem("", item.subject, item.size, f"{SKIP_CORRUPT}: {payload.reason}"),
                    )
                )
                continue
            data = payload.open().read() if payload.streamed else payload.bytes()
            target_id, _change_key = self.target.import_item(
                target.id, data, item_id=target.state["map"].get(item.id)
            )
            out.append(Written(item, target_id=target_id, size=len(data)))
        return out

    def note_written(self, target: TargetFolder, written: list[Written]) -> None:
        for w in written:
            if w.ok and w.target_id:
                if w.item.id not in target.state["map"]:
                    target.state["target_count"] += 1
                target.state["map"][w.item.id] = w.target_id

    def close_folder(self, target: TargetFolder) -> dict:
        return {**target.state, "target_count": self.target.folder_count(target.id)}

    def inventory(self, target: TargetFolder) -> list[TargetItem]:
        ours = set(target.state["map"].values())
        return [
            TargetItem(item_id, f"sk:{key}", ours=item_id in ours)
            for key, ids in self.target.search_keys(target.id).items()
            for item_id in ids
        ]

    def comparable_flags(self, target: TargetFolder, flags: frozenset[str]) -> frozenset[str]:
        return frozenset()  # read state and flags travel inside the stream, re-imported when the item changes

    def set_flags(self, target: TargetFolder, changes) -> None:
        pass

    def move(self, source: TargetFolder, destination: TargetFolder, ids: list) -> None:
        """EWS reports a move as a new item in the other folder, which the copy imports there (with its new
        id): the old copy goes."""
        self.delete(source, ids)

    def delete(self, target: TargetFolder, ids: list) -> None:
        gone = set(ids)
        for item_id in ids:
            self.target.delete_item(item_id)
        with self.shared["lock"]:
            # The pipeline may save this folder's older state (a folder with nothing new is not reopened):
            # the engine drops these from every map it returns.
            self.shared.setdefault("deleted", set()).update(gone)
        target.state["map"] = {k: v for k, v in target.state["map"].items() if v not in gone}
        target.state["target_count"] = max(0, target.state["target_count"] - len(ids))

    def totals(self, target: TargetFolder) -> tuple[int, int]:
        return self.target.folder_count(target.id), 0
