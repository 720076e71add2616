"""The copy pipeline: one source reader, one target writer, and everything between them.

    pipeline = CopyPipeline(reader, writer, kind="imap", connections=3)
    result = pipeline.sync(checkpoint, progress)          # pre-stage and incremental passes
    result = pipeline.sync(checkpoint, progress, delta=True)  # the cutover: also flags, moves, deletions
    report = pipeline.verify()

How a pass runs. The caller's thread opens the reader and writer, lists the source folders and, folder by
folder, pulls pages of changes from the reader (only as fast as the workers need work: a huge folder is never
listed whole), drops what the checkpoint says is done, matches the rest against the target's index when the
target may hold copies the checkpoint does not know of, skips what is too big for the target, and cuts the
rest into batches of at most `batch_bytes` / `batch_messages` (an item of `large_item_bytes` or more alone).
`connections` worker threads, each with its own reader and writer clone, fetch a batch and write it; the
fence (the orchestrator's lease check) is called before every write. Finished batches come back to the
caller's thread, which alone updates the checkpoint and calls progress.

The checkpoint (version 2):
    {"engine": kind, "version": 2, "items": n, "bytes": n, "skipped": [...],
     "folders": {folder.key: {**reader.generation(folder), "cursor": c, "done": [ids], "complete": bool,
                              "target": target folder name, "target_state": writer's state}}}
A folder's `cursor` is the reader's: every item listed before it is on the target. `done` holds the ids past
the cursor already dealt with (batches that finished while an earlier one was still running), so a resume
repeats nothing; it is bounded by the pages in flight, not by the folder's size.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from migrations_app.engines.base import (
    SKIP_TOO_BIG,
    EngineError,
    FolderComparison,
    FolderSync,
    ProgressCallback,
    SkippedItem,
    SyncResult,
    VerifyResult,
)
from migrations_app.engines.pipeline.delta import carry_changes
from migrations_app.engines.pipeline.protocols import (
    Folder,
    Item,
    Page,
    SourceReader,
    TargetFolder,
    TargetItem,
    TargetWriter,
    Written,
    item_key,
)

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2
Fence = Callable[[], None]


# --- bookkeeping of one folder in one pass ------------------------------------------------------------------


@dataclass
class _PageRun:
    cursor: Any
    listed: set = field(default_factory=set)  # every id the page listed
    waiting: int = 0  # batches of this page not finished yet
    closed: bool = False  # every batch of the page has been cut

    @property
    def finished(self) -> bool:
        return self.closed and self.waiting == 0


@dataclass
class _FolderRun:
    folder: Folder
    target: TargetFolder
    generation: dict
    base_cursor: Any
    base_done: set
    result: FolderSync
    index: dict[str, list] = field(default_factory=dict)
    pages: list[_PageRun] = field(default_factory=list)
    done: set = field(default_factory=set)  # ids dealt with in this pass
    listed_all: bool = False
    complete: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def entry(self) -> dict:
        cursor = self.base_cursor
        finished = 0
        for page in self.pages:
            if not page.finished:
                break
            cursor = page.cursor
            finished += 1
        still_open = (
            set().union(*(p.listed for p in self.pages[finished:])) if finished < len(self.pages) else set()
        )
        closed_ids = set().union(*(p.listed for p in self.pages[:finished])) if finished else set()
        done = (self.base_done - closed_ids) | (self.done & still_open)
        if self.complete:
            done = set()
        return {
            **self.generation,
            "cursor": cursor,
            "done": sorted(done, key=lambda v: (str(type(v)), v)),
            "complete": self.complete,
            "target": self.target.name,
            "target_state": self.target.state,
        }


@dataclass
class _Batch:
    run: _FolderRun
    page: _PageRun
    items: list[Item]


@dataclass
class _Finished:
    batch: _Batch
    written: list[Written]


# --- the pipeline -------------------------------------------------------------------------------------------


class CopyPipeline:
    def __init__(
        self,
        reader: SourceReader,
        writer: TargetWriter,
        *,
        kind: str,
        connections: int = 3,
        batch_bytes: int = 6 * 1024 * 1024,
        batch_messages: int = 250,
        large_item_bytes: int = 16 * 1024 * 1024,
        translate: Callable[[BaseException], BaseException] | None = None,
        join_timeout: float = 60.0,
    ):
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.reader = reader
        self.writer = writer
        self.kind = kind
        self.connections = connections
        self.batch_bytes = batch_bytes
        self.batch_messages = batch_messages
        self.large_item_bytes = large_item_bytes
        self.translate = translate
        self.join_timeout = join_timeout

    # --- sync -----------------------------------------------------------------------------------------------

    def sync(
        self,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
        *,
        delta: bool = False,
        delete_policy: str = "copied",
        fence: Fence | None = None,
    ) -> SyncResult:
        cp = checkpoint if checkpoint and checkpoint.get("engine") == self.kind else {}
        cp = upgrade_checkpoint(cp)
        fence = fence or getattr(progress, "fence", None)
        heartbeat = getattr(progress, "heartbeat", None)
        idle = float(getattr(progress, "heartbeat_seconds", 30.0))
        totals = {"items": int(cp.get("items", 0)), "bytes": int(cp.get("bytes", 0))}
        copied = {"items": 0, "bytes": 0}
        previous: dict[str, dict] = dict(cp.get("folders", {}))
        skipped = [SkippedItem.from_dict(s) for s in cp.get("skipped", [])]
        runs: dict[str, _FolderRun] = {}
        results: dict[str, FolderSync] = {}

        writer_state = getattr(self.writer, "mailbox_state", None)

        def snapshot() -> dict:
            folders = dict(previous)
            folders.update({key: run.entry() for key, run in runs.items()})
            out = {
                "engine": self.kind,
                "version": CHECKPOINT_VERSION,
                "items": totals["items"],
                "bytes": totals["bytes"],
                "folders": folders,
                "skipped": [s.as_dict() for s in skipped],
            }
            if writer_state is not None:
                out["writer"] = writer_state()
            if flying:  # the biggest item of each batch in flight: what a worker that died was copying
                out["in_flight"] = [
                    {"folder": b.run.folder.name, "id": big.id, "size": big.size, "subject": big.subject}
                    for b in flying.values()
                    for big in [max(b.items, key=lambda i: i.size)]
                ]
            return out

        def report() -> None:
            if progress is not None:
                progress(totals["items"], totals["bytes"], snapshot())

        work: queue.Queue = queue.Queue()
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        workers: list[threading.Thread] = []
        flying: dict[int, _Batch] = {}  # what the workers are copying now, named in the checkpoint
        try:
            self.reader.open()
            self.writer.open()
            if hasattr(self.writer, "restore"):
                self.writer.restore(cp.get("writer") or {})
            limit = self.writer.size_limit()
            folders = self.reader.folders()
            delta_stats: dict = {}
            gained: set[str] = set()
            if delta:
                delta_stats, gained = carry_changes(
                    self.reader,
                    self.writer,
                    folders,
                    previous,
                    policy=delete_policy,
                    fence=fence,
                    tick=report,
                )
            planned = self._plan(folders, previous, runs, results, skipped, limit, report, gained)
            in_flight = 0
            depth = self.connections * 2
            more = True
            while more or in_flight:
                dispatched = False
                while more and in_flight < depth:
                    batch = next(planned, None)
                    if batch is None:
                        more = False
                        break
                    work.put(batch)
                    flying[id(batch)] = batch
                    dispatched = True
                    in_flight += 1
                    if len(workers) < min(self.connections, in_flight):
                        thread = threading.Thread(
                            target=self._worker,
                            args=(work, events, stop, fence),
                            name=f"{self.kind}-copy-{len(workers)}",
                            daemon=True,
                        )
                        thread.start()
                        workers.append(thread)
                if not in_flight:
                    continue
                if dispatched:
                    report()  # names what is in flight (saved at most once a second by the orchestrator)
                try:
                    kind, payload = events.get(timeout=idle)
                except queue.Empty:
                    if heartbeat is not None:
                        heartbeat()  # the workers are slow (a big upload, a paced one): keep the lease
                    continue
                if kind == "error":
                    raise payload
                in_flight -= 1
                finished: _Finished = payload
                batch = finished.batch
                flying.pop(id(batch), None)
                run = batch.run
                self.writer.note_written(run.target, finished.written)
                for written in finished.written:
                    run.done.add(written.item.id)
                    if written.ok:
                        run.result.items_copied += 1
                        run.result.bytes_copied += written.size
                        totals["items"] += 1
                        totals["bytes"] += written.size
                        copied["items"] += 1
                        copied["bytes"] += written.size
                    else:
                        written.skipped.folder = run.folder.name  # people know the source's name
                        run.result.items_skipped += 1
                        skipped.append(written.skipped)
                for item in batch.items:  # gone from the source since listing: nothing to copy
                    run.done.add(item.id)
                batch.page.waiting -= 1
                self._finish_if_done(run)
                report()
            for key, stats in delta_stats.items():
                if stats.flags_updated or stats.moved_in or stats.moved_out or stats.deleted:
                    folder = next(f for f in folders if f.key == key)
                    result = results.setdefault(
                        key,
                        FolderSync(folder=folder.name, target_folder=previous.get(key, {}).get("target", "")),
                    )
                    result.flags_updated += stats.flags_updated
                    result.items_moved += stats.moved_in
                    result.items_deleted += stats.deleted
            return SyncResult(
                items_copied=copied["items"],
                bytes_copied=copied["bytes"],
                checkpoint=snapshot(),
                folders=list(results.values()),
                skipped=skipped,
            )
        except EngineError as exc:
            exc.checkpoint = exc.checkpoint or snapshot()
            raise
        except Exception as exc:
            if self.translate is None:
                raise
            error = self.translate(exc)
            if error is exc:
                raise
            error.checkpoint = snapshot()
            raise error from exc
        finally:
            stop.set()
            for _ in workers:
                work.put(None)
            for thread in workers:
                thread.join(timeout=self.join_timeout)
            self.reader.close()
            self.writer.close()

    def _plan(
        self,
        folders: list[Folder],
        previous: dict[str, dict],
        runs: dict[str, _FolderRun],
        results: dict[str, FolderSync],
        skipped: list[SkippedItem],
        limit: int | None,
        report: Callable[[], None],
        gained: set[str],
    ) -> Iterator[_Batch]:
        """Folder by folder, page by page: the batches to copy. A generator, so the caller pulls pages only
        as its workers need work, and reports progress between pages (the heartbeat of a long listing)."""
        for folder in folders:
            old = previous.get(folder.key)
            generation = self.reader.generation(folder)
            same = bool(old) and all(old.get(k) == v for k, v in generation.items())
            cursor = old.get("cursor") if same else None
            done = set(old.get("done", [])) if same else set()
            if old and not same:
                # The source folder was recreated: its earlier skipped items will be met (and listed) again.
                skipped[:] = [s for s in skipped if s.folder != folder.name]
            pages = self.reader.changes(folder, cursor)
            first: Page | None = next(pages, None)
            if (
                same
                and folder.key not in gained
                and old.get("complete")
                and not done
                and (first is None or (first.last and not first.items and not first.deleted))
            ):
                continue  # nothing new: the target is not even looked at (keeps incremental passes fast)
            target = self.writer.open_folder(folder, (old or {}).get("target_state"))
            result = FolderSync(folder=folder.name, target_folder=target.name)
            run = _FolderRun(folder, target, generation, cursor, done, result)
            runs[folder.key] = run
            results[folder.key] = result
            if folder.key in gained:
                target.unknown = True  # the delta moved items in: they are found, not copied again
            if target.unknown or (old is not None and not same):
                run.index = self.writer.index(target)
            while first is not None:
                page, first = first, None
                yield from self._cut(run, page, limit, skipped)
                report()
                if page.last:
                    break
                first = next(pages, None)
            run.listed_all = True
            self._finish_if_done(run)

    def _cut(
        self, run: _FolderRun, page: Page, limit: int | None, skipped: list[SkippedItem]
    ) -> Iterator[_Batch]:
        page_run = _PageRun(cursor=page.cursor, listed={item.id for item in page.items})
        run.pages.append(page_run)
        items = [item for item in page.items if item.id not in run.base_done]
        too_big = [item for item in items if limit is not None and item.size > limit]
        if run.index or too_big:
            self.reader.keys(run.folder, items if run.index else too_big)
        current: list[Item] = []
        size = 0
        batches: list[_Batch] = []

        def close() -> None:
            nonlocal current, size
            if current:
                batches.append(_Batch(run, page_run, current))
            current, size = [], 0

        adopt = getattr(self.writer, "adopt", None)
        for item in items:
            if run.index and run.index.get(item.key):
                run.index[item.key].pop()
                run.result.items_already_there += 1
                run.done.add(item.id)
                continue
            alternative = _by_message_id(item.key)
            if run.index and adopt is not None and alternative and run.index.get(alternative):
                # made by a write whose finishing step never came (Graph importMime before its PATCH)
                adopt(run.target, run.index[alternative].pop(), item)
                run.result.items_already_there += 1
                run.done.add(item.id)
                continue
            if limit is not None and item.size > limit:
                skipped.append(
                    SkippedItem(
                        run.folder.name,
                        item.subject,
                        item.size,
                        f"{SKIP_TOO_BIG}: {item.size} bytes, the target takes at most {limit}",
                        uid=item.id if isinstance(item.id, int) else None,
                    )
                )
                run.result.items_skipped += 1
                run.done.add(item.id)
                continue
            if item.size >= self.large_item_bytes:
                close()
                batches.append(_Batch(run, page_run, [item]))
                continue
            if current and (size + item.size > self.batch_bytes or len(current) >= self.batch_messages):
                close()
            current.append(item)
            size += item.size
        close()
        page_run.waiting = len(batches)
        page_run.closed = True
        yield from batches

    def _finish_if_done(self, run: _FolderRun) -> None:
        if run.listed_all and not run.complete and all(page.finished for page in run.pages):
            run.target.state = self.writer.close_folder(run.target)
            run.complete = True

    # --- the workers ----------------------------------------------------------------------------------------

    def _worker(
        self, work: queue.Queue, events: queue.Queue, stop: threading.Event, fence: Fence | None
    ) -> None:
        reader = writer = None
        try:
            reader = self.reader.clone()
            writer = self.writer.clone()
            reader.open()
            writer.open()
            while not stop.is_set():
                batch = work.get()
                if batch is None:
                    break
                if fence is not None:
                    fence()  # before reading: a run that lost its lease stops within one batch
                fetched = list(reader.fetch(batch.run.folder, batch.items, self.large_item_bytes))
                for item, payload in fetched:
                    if not item.key:  # a MIME payload: the shared formula (a reader of other formats sets it)
                        item.key = item_key(payload.header(), item.size)
                try:
                    if fence is not None:
                        fence()  # and again just before the write
                    written = writer.write(batch.run.target, fetched) if fetched else []
                finally:
                    for _, payload in fetched:
                        payload.close()
                events.put(("done", _Finished(batch, written)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            error = exc
            if not isinstance(exc, EngineError) and self.translate is not None:
                translated = self.translate(exc)
                error = translated
            events.put(("error", error))
        finally:
            if reader is not None:
                reader.close()
            if writer is not None:
                writer.close()

    # --- verify ---------------------------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        """Per target folder: the source folders' counts and bytes (summed, where several map to one target
        folder) against the target's, and the items themselves by key: source items with no copy on the
        target are named as missing, the portal's copies whose source item is gone as extra (by subject)."""
        try:
            self.reader.open()
            self.writer.open()
            groups: dict[str, list] = {}
            for folder in self.reader.folders():
                target = self.writer.open_folder(folder, None, create=False)
                name = target.name if target is not None else "/".join(folder.path)
                groups.setdefault(name, [target, []])[1].append(folder)
            result = VerifyResult()
            compare_bytes = self.writer.compares_bytes()
            for name, (target, group) in groups.items():
                count = size = 0
                source: list[tuple[Folder, Item]] = []
                for folder in group:
                    items = self.reader.inventory(folder)
                    count += len(items)
                    size += sum(item.size for item in items)
                    source.extend((folder, item) for item in items)
                target_items = self.writer.inventory(target) if target is not None else []
                target_count, target_bytes = self.writer.totals(target) if target is not None else (0, 0)
                missing, extra = _compare(source, target_items)
                for folder in group:
                    unnamed = [item for f, item in missing if f is folder and not item.subject]
                    if unnamed:
                        self.reader.keys(folder, unnamed)
                result.folders.append(
                    FolderComparison(
                        " + ".join(f.name for f in group),
                        name,
                        count,
                        size,
                        target_count,
                        target_bytes,
                        compare_bytes=compare_bytes,
                        missing=[item.subject or item.key for _, item in missing],
                        extra=[item.subject or item.key for item in extra],
                    )
                )
            return result
        except EngineError:
            raise
        except Exception as exc:
            error = self.translate(exc) if self.translate is not None else exc
            if error is exc:
                raise
            raise error from exc
        finally:
            self.reader.close()
            self.writer.close()


def _compare(source: list[tuple[Folder, Item]], target: list[TargetItem]):
    """Pair by key as multisets: (source items without a target copy, the portal's target items without a
    source item). Target items the portal did not write are no concern of verify."""
    by_key: dict[str, list[TargetItem]] = {}
    for item in target:
        by_key.setdefault(item.key, []).append(item)
    missing = []
    for folder, item in source:
        partners = by_key.get(item.key)
        if partners:
            partners.pop()
        else:
            missing.append((folder, item))
    extra = [item for items in by_key.values() for item in items if item.ours]
    return missing, extra


def _by_message_id(key: str) -> str | None:
    """ "mid:<Message-ID>" for a key "m:<Message-ID>:<size>": what a writer indexes items it cannot vouch for
    under (see TargetWriter.index)."""
    if not key.startswith("m:"):
        return None
    return "mid:" + key[2:].rsplit(":", 1)[0]


def upgrade_checkpoint(cp: dict) -> dict:
    """A version 1 checkpoint (the engines before the pipeline: last_uid and done ranges of UIDs) as version
    2, so a mailbox pre-staged by the old code carries on without copying anything again."""
    if not cp or cp.get("version", 1) >= CHECKPOINT_VERSION:
        return cp
    folders = {}
    for key, entry in cp.get("folders", {}).items():
        done = [uid for low, high in entry.get("done", []) for uid in range(low, high + 1)]
        target_state = {
            k: entry[k]
            for k in ("target_uidvalidity", "watermark", "target_id", "target_count")
            if k in entry
        }
        folders[key] = {
            "uidvalidity": entry.get("uidvalidity"),
            "cursor": entry.get("last_uid", 0),
            "done": done,
            "complete": bool(entry.get("complete")),
            "target": entry.get("target", key),
            "target_state": target_state,
        }
    return {**cp, "version": CHECKPOINT_VERSION, "folders": folders}
