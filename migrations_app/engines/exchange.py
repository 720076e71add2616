"""Exchange 2013 -> Exchange Online, every item class at full fidelity (docs/adr/014-exchange-engine.md).

An EWS reader (ews_source.EwsReader: SyncFolderItems pages, ExportItems) and a Graph mailbox-import writer
(graph_import_target.GraphImportWriter: one POST per item to the import session's URL) composed by the copy
pipeline (engines.pipeline), which owns batching, the worker threads, the checkpoint, dedupe against the target,
the cutover delta (moves and deletions under the target's delete_policy) and the lease check before every write.

What this engine adds around the pipeline: pre-flight (impersonation granted, target licensed, counts by class,
items over Exchange Online's 150 MB), search folders listed as skipped, per-class counts (mail, calendar, contacts,
tasks, notes, journal) in the checkpoint's `classes`, which the mailbox page shows, and the mailbox's settings
(exchange_settings.move_settings) after every pass: pre-stage, final delta and catch-up alike, so automatic replies
switched on between pre-stage and cutover arrive, and each pass updates what the last one wrote.

Dedupe, in three layers: the pipeline's cursor (the SyncFolderItems state) and `done` ids; the writer's map of
source item id -> target item id (an item changed on the source is re-imported in place); and, where the target
folder holds items the checkpoint does not account for (a crash between an import and its checkpoint, a lost
checkpoint), the target's items are indexed by PR_SEARCH_KEY, which the stream carries, and matched first.
"""

from __future__ import annotations

import logging

from migrations_app.engines.base import (
    ITEM_TOO_LARGE,
    SKIP_SEARCH_FOLDER,
    EngineError,
    MailboxSpec,
    PermanentError,
    PreflightResult,
    ProgressCallback,
    SkippedItem,
    SyncResult,
)
from migrations_app.engines.ews_preflight import counts_by_class, large_items
from migrations_app.engines.ews_source import EwsReader
from migrations_app.engines.exchange_settings import move_settings
from migrations_app.engines.graph_client import MAILBOX_CONCURRENCY, GraphClient
from migrations_app.engines.graph_import_target import (
    MAX_ITEM_BYTES,
    GraphImportTarget,
    GraphImportWriter,
    folder_class_name,
)
from migrations_app.engines.pipeline.copy import CopyPipeline
from migrations_app.engines.pipeline.engine import PipelineEngine

log = logging.getLogger(__name__)

CLASSES = ("mail", "calendar", "contacts", "tasks", "notes", "journal")


class ExchangeEngine(PipelineEngine):
    kind = "exchange"
    expected_bytes_per_s = 5_000_000  # one POST per item: items/s, not bytes/s, bound it
    connections = MAILBOX_CONCURRENCY  # Graph's four concurrent requests per mailbox
    batch_messages = 20
    batch_bytes = 10 * 1024 * 1024

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
        self.batch_messages = batch_items
        self.batch_bytes = batch_bytes
        self.max_item_bytes = max_item_bytes
        self.graph_version = graph_version
        self.last_stats: dict = {}

    # --- the two ends --------------------------------------------------------------------------------------------

    def reader(self, spec: MailboxSpec) -> EwsReader:
        return EwsReader(
            spec.source, spec.source_user or spec.email, max_wait=self.max_wait, page_size=self.page_size
        )

    def _target(self, spec: MailboxSpec) -> GraphImportTarget:
        user = spec.target_user or spec.email
        graph = GraphClient(
            spec.target,
            user,
            http_client=self.http_client,
            concurrency=self.connections,
            max_wait=self.max_wait,
        )
        return GraphImportTarget(
            graph, user, version=spec.target.options.get("graph_version", self.graph_version)
        )

    def writer(self, spec: MailboxSpec) -> GraphImportWriter:
        return GraphImportWriter(lambda: self._target(spec), size_limit=self.max_item_bytes)

    # --- pre-flight ------------------------------------------------------------------------------------------

    def preflight(self, spec: MailboxSpec) -> PreflightResult:
        """Source reachable, impersonation granted, the mailbox there; the target provisioned and licensed; the
        items by class and any item over the target's limit (ITEM_TOO_LARGE, naming them: the copy could only
        skip them). The details are kept on the mailbox for its page."""
        try:
            reader = self.reader(spec)
            reader.open()
            folders = [f for f in reader.source_folders() if not f.search]
            writer = self.writer(spec)
            writer.open()
            too_large = large_items(reader.mailbox, folders, self.max_item_bytes)
        except PermanentError as exc:
            return PreflightResult(ok=False, code=exc.code, message=exc.message or str(exc))
        details = {"classes": counts_by_class(folders), "too_large": too_large}
        count = sum(f.total_count for f in folders)
        if too_large:
            named = "; ".join(
                f"{i['subject'] or '(no subject)'!r} in {i['folder']} ({i['size'] / 1048576:,.0f} MB)"
                for i in too_large[:5]
            )
            more = f" and {len(too_large) - 5} more" if len(too_large) > 5 else ""
            return PreflightResult(
                ok=False,
                code=ITEM_TOO_LARGE,
                message=f"{len(too_large)} item(s) over Exchange Online's 150 MB: {named}{more}",
                source_item_count=count,
                details=details,
            )
        return PreflightResult(ok=True, source_item_count=count, details=details)

    def counts_by_class(self, spec: MailboxSpec) -> dict[str, int]:
        reader = self.reader(spec)
        reader.open()
        return counts_by_class(reader.source_folders())

    # --- passes ----------------------------------------------------------------------------------------------

    def sync(
        self, spec: MailboxSpec, checkpoint: dict | None = None, progress: ProgressCallback | None = None
    ) -> SyncResult:
        return self._pass(spec, checkpoint, progress, delta=False)

    def cutover(
        self, spec: MailboxSpec, checkpoint: dict | None = None, progress: ProgressCallback | None = None
    ) -> SyncResult:
        return self._pass(spec, checkpoint, progress, delta=True)

    def _pass(self, spec, checkpoint, progress, *, delta: bool) -> SyncResult:
        reader, writer = self.reader(spec), self.writer(spec)
        pipeline = CopyPipeline(
            reader,
            writer,
            kind=self.kind,
            connections=self.connections,
            batch_bytes=self.batch_bytes,
            batch_messages=self.batch_messages,
            large_item_bytes=self.large_item_bytes,
            translate=self.translate,
            join_timeout=self.timeout,
        )
        reader.open()
        cp = (
            dict(checkpoint)
            if checkpoint and checkpoint.get("engine") == self.kind
            else {"engine": self.kind}
        )
        cp.setdefault("version", 2)
        skipped = list(cp.get("skipped", []))
        listed = {s["folder"] for s in skipped if s["reason"] == SKIP_SEARCH_FOLDER}
        for folder in reader.source_folders():
            if folder.search and folder.key not in listed:
                skipped.append(SkippedItem(folder.key, "(search folder)", 0, SKIP_SEARCH_FOLDER).as_dict())
        cp["skipped"] = skipped

        def report(items: int, size: int, snapshot: dict) -> None:
            progress(items, size, self._with_classes(snapshot, reader, writer))

        report.fence = getattr(progress, "fence", None)  # the pipeline reads the lease check from here
        try:
            result = pipeline.sync(
                cp,
                report if progress is not None else None,
                delta=delta,
                delete_policy=self.delete_policy(spec) if delta else "copied",
            )
        finally:
            self.last_stats = {
                "source": dict(reader.shared["mailbox"].stats) if "mailbox" in reader.shared else {}
            }
            if "target" in writer.shared:
                target = writer.shared["target"]
                self.last_stats.update(target=dict(target.stats), graph=dict(target.graph.stats))
        result.checkpoint = self._with_classes(result.checkpoint, reader, writer)
        if spec.source.options.get("move_settings", True):
            try:
                writer.open()
                result.checkpoint["settings"] = move_settings(
                    reader.mailbox,
                    writer.target,
                    result.checkpoint,
                    phase="cutover" if delta else "pre-stage",
                )
            except (
                EngineError
            ) as exc:  # busy or unreachable: the items are copied; the retry starts from here
                exc.checkpoint = exc.checkpoint or result.checkpoint
                raise
        return result

    @staticmethod
    def _with_classes(checkpoint: dict, reader: EwsReader, writer: GraphImportWriter) -> dict:
        """Per class: items on the target that the portal copied (the folders' maps) of the source's count.
        Target items the delta deleted leave the maps here (the pipeline keeps a folder's older state when it
        had nothing new to copy)."""
        deleted = writer.shared.get("deleted", set())
        classes = {kind: {"copied": 0, "total": 0} for kind in CLASSES}
        for folder in reader.source_folders():
            if not folder.search:
                classes[folder.kind]["total"] += folder.total_count
        folders = {}
        for key, entry in checkpoint.get("folders", {}).items():
            state = dict(entry.get("target_state") or {})
            if deleted and state.get("map"):
                state["map"] = {k: v for k, v in state["map"].items() if v not in deleted}
            folders[key] = {**entry, "target_state": state}
            kind = state.get("class") or folder_class_name("IPF.Note")
            classes[kind]["copied"] += len(state.get("map", {}))
        return {**checkpoint, "folders": folders, "classes": classes}
