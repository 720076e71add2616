"""Exchange 2013 -> Exchange Online, every item class at full fidelity (docs/adr/012-exchange-engine.md).

A reader (ews_source.EwsMailbox: SyncFolderItems + ExportItems) and a writer (graph_import_target: Graph mailbox
import) joined by the smallest glue that keeps the engine contract. The copy pipeline of issue 12 (batching,
workers, checkpoints, dedupe, progress, the lease check before every write) was not on its branch when this was
written; this module is that glue for one engine, and is shaped so moving onto the pipeline is mechanical: the
reader's pages and the writer's import_item are the two ends, everything in between is here.

Checkpoint, per folder (key "Inbox/Projects", "archive:Inbox"): the SyncFolderItems sync state of the last page
finished, the target folder id, the map source item id -> [target item id, source change key], and `pending`:
the search keys of a batch being imported. A page's state is saved only once every item of the page is imported,
so a crash re-reads the page; items already in the map are not imported again, and items imported but not yet in
the map (the crash window) are found on the target by their PR_SEARCH_KEY before anything else happens. A folder
with no sync state whose target folder already holds items (a lost checkpoint) is matched the same way.

Delete policy (target option `delete_policy`): "mirror" (default) removes from the target what was deleted or moved
away on the source between pre-stage and cutover; "keep" leaves it there and counts it.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from migrations_app.engines.base import (
    SKIP_CORRUPT,
    SKIP_SEARCH_FOLDER,
    SKIP_TOO_BIG,
    Engine,
    EngineError,
    FolderComparison,
    FolderSync,
    MailboxSpec,
    PermanentError,
    PreflightResult,
    ProgressCallback,
    SkippedItem,
    SyncResult,
    VerifyResult,
)
from migrations_app.engines.ews_source import EwsMailbox, SourceFolder, SourceItem
from migrations_app.engines.graph_client import MAILBOX_CONCURRENCY, GraphClient
from migrations_app.engines.graph_import_target import GraphImportTarget

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
MAX_ITEM_BYTES = 150 * 1024 * 1024  # Exchange Online's largest message
ARCHIVE_FOLDER = "In-Place Archive (Exchange 2013)"
CLASSES = ("mail", "calendar", "contacts", "tasks", "notes", "journal")


class ExchangeEngine(Engine):
    kind = "exchange"
    expected_bytes_per_s = 5_000_000  # one POST per item: items/s, not bytes/s, bound it

    def __init__(
        self,
        *,
        http_client=None,
        connections: int = MAILBOX_CONCURRENCY,
        max_wait: float = 120.0,
        page_size: int = 100,
        batch_items: int = 20,
        batch_bytes: int = 10 * 1024 * 1024,
        max_item_bytes: int = MAX_ITEM_BYTES,
        graph_version: str = "v1.0",
    ):
        self.http_client = http_client
        self.connections = min(connections, MAILBOX_CONCURRENCY)
        self.max_wait = max_wait
        self.page_size = page_size
        self.batch_items = batch_items
        self.batch_bytes = batch_bytes
        self.max_item_bytes = max_item_bytes
        self.graph_version = graph_version
        self.last_stats: dict = {}

    # --- the two ends --------------------------------------------------------------------------------------------

    def _source(self, spec: MailboxSpec) -> EwsMailbox:
        return EwsMailbox(spec.source, spec.source_user or spec.email, max_wait=self.max_wait)

    def _target(self, spec: MailboxSpec) -> GraphImportTarget:
        user = spec.target_user or spec.email
        graph = GraphClient(
            spec.target,
            user,
            http_client=self.http_client,
            concurrency=self.connections,
            max_wait=self.max_wait,
        )
        version = spec.target.options.get("graph_version", self.graph_version)
        return GraphImportTarget(graph, user, version=version)

    def _folders(self, spec: MailboxSpec, source: EwsMailbox) -> list[SourceFolder]:
        folders = source.folders()
        if spec.source.options.get("include_archive"):
            folders += source.folders(archive=True)
        return folders

    # --- pre-flight and verify -----------------------------------------------------------------------------------

    def preflight(self, spec: MailboxSpec) -> PreflightResult:
        try:
            source = self._source(spec)
            source.check()
            folders = [f for f in self._folders(spec, source) if not f.search]
            self._target(spec).mailbox_id()
        except PermanentError as exc:
            return PreflightResult(ok=False, code=exc.code, message=exc.message or str(exc))
        return PreflightResult(ok=True, source_item_count=sum(f.total_count for f in folders))

    def verify(self, spec: MailboxSpec) -> VerifyResult:
        source, target = self._source(spec), self._target(spec)
        well_known = source.well_known()
        result = VerifyResult()
        for folder in self._folders(spec, source):
            if folder.search:
                continue
            target_id = target.resolve_folder(
                _target_path(folder),
                folder.folder_class,
                well_known=well_known.get(folder.id, ""),
                create=False,
            )
            count = target.folder_count(target_id) if target_id else 0
            result.folders.append(
                FolderComparison(folder.key, folder.key, folder.total_count, 0, count, 0, compare_bytes=False)
            )
        return result

    # --- sync ------------------------------------------------------------------------------------------------

    def sync(
        self, spec: MailboxSpec, checkpoint: dict | None = None, progress: ProgressCallback | None = None
    ) -> SyncResult:
        cp = _fresh(checkpoint)
        source, target = self._source(spec), self._target(spec)
        delete_policy = spec.target.options.get("delete_policy", "mirror")
        skipped = [SkippedItem.from_dict(s) for s in cp["skipped"]]
        lock = threading.Lock()
        start_items, start_bytes = cp["items"], cp["bytes"]
        results: list[FolderSync] = []

        def save() -> None:
            cp["skipped"] = [s.as_dict() for s in skipped]
            if progress:
                progress(cp["items"], cp["bytes"], cp)

        target.mailbox_id()
        well_known = source.well_known()
        folders = self._folders(spec, source)
        totals = defaultdict(int)
        for folder in folders:
            if not folder.search:
                totals[folder.kind] += folder.total_count
        for kind in CLASSES:
            cp["classes"].setdefault(kind, {"copied": 0, "total": 0})["total"] = totals.get(kind, 0)

        with ThreadPoolExecutor(self.connections, thread_name_prefix="exchange-import") as pool:
            for folder in folders:
                if folder.search:
                    if folder.key not in cp["search_folders"]:
                        cp["search_folders"].append(folder.key)
                        skipped.append(SkippedItem(folder.key, "(search folder)", 0, SKIP_SEARCH_FOLDER))
                    continue
                state = cp["folders"].setdefault(
                    folder.key, {"state": "", "target": "", "map": {}, "pending": []}
                )
                if not state["target"]:
                    state["target"] = target.resolve_folder(
                        _target_path(folder), folder.folder_class, well_known=well_known.get(folder.id, "")
                    )
                sync = FolderSync(folder.key, folder.key)
                results.append(sync)
                if state["pending"]:
                    self._reconcile(target, state, sync)
                # No sync state yet but items on the target (a lost checkpoint, or another tool got there
                # first): what is there already is recognised by its search key instead of imported again.
                adopt = {}
                if not state["state"] and target.folder_count(state["target"]):
                    known = {entry[0] for entry in state["map"].values()}
                    adopt = {
                        k: [i for i in v if i not in known]
                        for k, v in target.search_keys(state["target"]).items()
                    }
                while True:
                    page = source.changes(folder.id, state["state"] or None, page_size=self.page_size)
                    for source_id in page.deletes:
                        entry = state["map"].pop(source_id, None)
                        if entry and delete_policy == "mirror":
                            target.delete_item(entry[0])
                    todo: list[SourceItem] = []
                    for _change, item in page.upserts:
                        entry = state["map"].get(item.id)
                        if entry is None and adopt.get(item.search_key):
                            entry = state["map"][item.id] = [adopt[item.search_key].pop(0), item.change_key]
                        if entry and entry[1] == item.change_key:
                            sync.items_already_there += 1
                            continue
                        if item.size > self.max_item_bytes:
                            if not any(s.uid == _uid(item) for s in skipped):
                                skipped.append(
                                    SkippedItem(
                                        folder.key,
                                        item.subject,
                                        item.size,
                                        f"{SKIP_TOO_BIG}: over 150 MB",
                                        _uid(item),
                                    )
                                )
                                sync.items_skipped += 1
                            continue
                        todo.append(item)
                    for batch in _batches(todo, self.batch_items, self.batch_bytes):
                        self._copy_batch(
                            pool, source, target, folder, state, batch, sync, skipped, cp, lock, save
                        )
                    state["state"] = page.sync_state
                    save()
                    if page.last:
                        break
        self.last_stats = {
            "source": dict(source.stats),
            "target": dict(target.stats),
            "graph": dict(target.graph.stats),
        }
        cp["skipped"] = [s.as_dict() for s in skipped]
        return SyncResult(
            cp["items"] - start_items, cp["bytes"] - start_bytes, cp, folders=results, skipped=skipped
        )

    def _copy_batch(self, pool, source, target, folder, state, batch, sync, skipped, cp, lock, save) -> None:
        exported = source.export(batch)
        work = []
        for item, data in zip(batch, exported, strict=True):
            if isinstance(data, EngineError):
                skipped.append(
                    SkippedItem(
                        folder.key, item.subject, item.size, f"{SKIP_CORRUPT}: {data.message or data}"
                    )
                )
                sync.items_skipped += 1
                continue
            work.append((item, data))
        if not work:
            return
        # Written before the POSTs: after a crash, these are looked for on the target by their search key.
        state["pending"] = [[item.id, item.search_key, item.change_key] for item, _ in work]
        save()

        def one(pair):
            item, data = pair
            entry = state["map"].get(item.id)
            return item, data, target.import_item(state["target"], data, item_id=entry[0] if entry else None)

        failure = None
        for future in [pool.submit(one, pair) for pair in work]:
            try:
                item, data, (target_id, _change_key) = future.result()
            except Exception as exc:  # noqa: BLE001 - the first failure is raised once the others are recorded
                failure = failure or exc
                continue
            with lock:
                new = item.id not in state["map"]
                state["map"][item.id] = [target_id, item.change_key]
                if new:
                    cp["classes"][folder.kind]["copied"] += 1
                cp["items"] += 1
                cp["bytes"] += len(data)
                sync.items_copied += 1
                sync.bytes_copied += len(data)
        if failure is not None:
            save()  # what did arrive is recorded; `pending` stays for the next run to reconcile
            raise failure
        state["pending"] = []
        save()

    def _reconcile(self, target: GraphImportTarget, state: dict, sync: FolderSync) -> None:
        """The last run died while importing a batch: what arrived is on the target but not in the map."""
        on_target = target.search_keys(state["target"])
        known = {entry[0] for entry in state["map"].values()}
        for source_id, search_key, change_key in state["pending"]:
            if source_id in state["map"] or not search_key:
                continue
            found = [i for i in on_target.get(search_key, []) if i not in known]
            if found:
                state["map"][source_id] = [found[0], change_key]
                known.add(found[0])
                sync.items_already_there += 1
        state["pending"] = []


def _fresh(checkpoint: dict | None) -> dict:
    if (
        checkpoint
        and checkpoint.get("engine") == "exchange"
        and checkpoint.get("version") == CHECKPOINT_VERSION
    ):
        cp = checkpoint
    else:
        cp = {"engine": "exchange", "version": CHECKPOINT_VERSION, "items": 0, "bytes": 0, "folders": {}}
    cp.setdefault("classes", {})
    cp.setdefault("skipped", [])
    cp.setdefault("search_folders", [])
    return cp


def _target_path(folder: SourceFolder) -> tuple[str, ...]:
    """An archive folder goes under one "In-Place Archive (Exchange 2013)" folder of the primary mailbox: the
    target's own archive mailbox (inPlaceArchiveMailboxId, beta) is not written to yet (see the ADR)."""
    return (ARCHIVE_FOLDER, *folder.path) if folder.archive else folder.path


def _uid(item: SourceItem) -> int:
    return zlib.crc32(item.id.encode())


def _batches(items: list[SourceItem], max_items: int, max_bytes: int):
    batch, size = [], 0
    for item in items:
        if batch and (len(batch) >= max_items or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch
