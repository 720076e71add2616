"""IMAP to IMAP: every folder, flags and INTERNALDATE kept, every message delivered byte for byte.

The engine is the IMAP reader (reader.py) and the IMAP writer (writer.py) composed by the copy pipeline
(engines/pipeline): planning, batching, the worker threads, the checkpoint, dedupe, the cutover delta and
fencing are the pipeline's (docs/adr/016-copy-pipeline.md); docs/adr/006-imap-engine.md says why the IMAP
parts are as they are (imapclient with two fast paths, MULTIAPPEND, streamed large messages).

What makes repeating and resuming safe: a folder's checkpoint entry holds its UIDVALIDITY and a UID cursor
(everything at or below it is done) with the UIDs done above it, and on the target side a "watermark": the
target's UIDNEXT before this pass's unrecorded appends. Where the target may hold copies the checkpoint does
not know of (no checkpoint yet, a UIDVALIDITY change on either side, target UIDs at or above the watermark
after a crash), those target messages are indexed first by Message-ID + size (a hash of the header block +
size when there is no Message-ID) and one source message is skipped per matching target message, so two
different messages sharing a Message-ID both arrive.
"""

from __future__ import annotations

from imapclient import exceptions as imap_errors

from migrations_app.engines.base import (
    TARGET_MISSING,
    EngineError,
    MailboxSpec,
    PermanentError,
    PreflightResult,
)
from migrations_app.engines.imap.client import (
    Namespace,
    close_client,
    connect,
    engine_error,
    map_folder_name,
    quota_free,
    size_limit,
)
from migrations_app.engines.imap.reader import ImapReader
from migrations_app.engines.imap.writer import ImapWriter
from migrations_app.engines.pipeline import PipelineEngine
from migrations_app.engines.preflight import items_too_large, over_quota

_Namespace = Namespace  # the name the tests and older code know


class ImapEngine(PipelineEngine):
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
        self.large_item_bytes = large_message_bytes
        self.part_bytes = part_bytes
        self.timeout = timeout
        # Every sync is a cutover (flags, moves, deletions carried): for troubleshooting and older callers.
        # The orchestrator calls cutover() for the final pass instead.
        self.sync_flags = sync_flags

    def reader(self, spec: MailboxSpec) -> ImapReader:
        return ImapReader(
            spec.source, spec.source_user or spec.email, timeout=self.timeout, part_bytes=self.part_bytes
        )

    def writer(self, spec: MailboxSpec) -> ImapWriter:
        return ImapWriter(spec.target, spec.target_user or spec.email, timeout=self.timeout)

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, EngineError | imap_errors.IMAPClientError | OSError):
            return engine_error(exc)
        return exc  # not the servers' doing (a progress callback that raised, say): raised as it is

    def sync(self, spec, checkpoint=None, progress=None):
        if self.sync_flags:
            return self.cutover(spec, checkpoint, progress)
        return super().sync(spec, checkpoint, progress)

    def _connect(self, spec: MailboxSpec, side: str):
        if side == "source":
            return connect(spec.source, spec.source_user or spec.email, side=side, timeout=self.timeout)
        return connect(spec.target, spec.target_user or spec.email, side=side, timeout=self.timeout)

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
                reader = self.reader(spec)
                reader.client = src  # already logged in
                for folder in reader.folders():
                    n, b = reader.totals(folder)
                    count, size = count + n, size + b
            free = quota_free(tgt)
            blocked = over_quota(size, free, count=count)
            if blocked is None:
                reader = self.reader(spec)
                reader.client = src  # already logged in
                blocked = items_too_large(reader, size_limit(spec.target, tgt), size=size, count=count)
            if blocked is not None:
                return blocked
            return PreflightResult(
                ok=True, source_size_bytes=size, source_item_count=count, target_free_bytes=free
            )
        except Exception as exc:
            raise engine_error(exc) from exc
        finally:
            close_client(src)
            close_client(tgt)


__all__ = ["ImapEngine", "ImapReader", "ImapWriter", "_Namespace", "engine_error", "map_folder_name"]
