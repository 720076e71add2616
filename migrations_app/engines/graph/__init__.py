"""IMAP source -> Exchange Online through Microsoft Graph (docs/adr/009-graph-engine.md says why).

The engine is the IMAP reader (engines/imap/reader.py) and the Graph writer (writer.py) composed by the copy
pipeline (engines/pipeline): planning, batching, the workers, the checkpoint, dedupe, the cutover delta and
fencing are the pipeline's (docs/adr/016-copy-pipeline.md). The writer creates messages as received mail
with original dates and read state, each carrying a marker (its Message-ID and the source key) in a
single-value extended property; the GraphClient (graph_client.py) keeps within Graph's per-mailbox limits:
four concurrent requests, and the upload budget (150 MB in 5 minutes), which paces the copy rather than
failing it, its window kept in the checkpoint across runs.
"""

from __future__ import annotations

from urllib.parse import quote

import requests

from migrations_app.engines.base import (
    PROTOCOL,
    EngineError,
    MailboxSpec,
    PermanentError,
    PreflightResult,
)
from migrations_app.engines.graph.message import (
    BATCH_MESSAGES,
    EXCHANGE_MAX_MESSAGE_BYTES,
    INLINE_BYTES,
    MARKER,
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    message_json,
)
from migrations_app.engines.graph.quota import mailbox_quota
from migrations_app.engines.graph.writer import GraphWriter, check_target, import_mode
from migrations_app.engines.graph_client import UPLOAD_BUDGET_BYTES, UPLOAD_WINDOW_SECONDS, GraphClient
from migrations_app.engines.imap import ImapReader, engine_error
from migrations_app.engines.pipeline import PipelineEngine
from migrations_app.engines.preflight import items_too_large, over_quota


class GraphEngine(PipelineEngine):
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
        large_message_bytes: int = 16 * 1024 * 1024,
    ):
        if not 1 <= connections <= 4:
            raise ValueError("connections must be 1 to 4 (Graph allows 4 concurrent requests per mailbox)")
        self.connections = connections
        self.http_client = http_client
        self.max_wait = max_wait
        self.timeout = timeout
        self.batch_messages = min(batch_messages, 20)
        self.batch_bytes = batch_bytes
        self.large_item_bytes = large_message_bytes
        # Graph's per-mailbox upload limit (150 MB in 5 minutes); smaller only for tests and drills.
        self.upload_budget_bytes = upload_budget_bytes
        self.upload_window = upload_window

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

    def reader(self, spec: MailboxSpec) -> ImapReader:
        if spec.source.kind != "imap":
            raise PermanentError(
                PROTOCOL, f"source: the graph engine reads IMAP sources, not {spec.source.kind}"
            )
        return ImapReader(spec.source, spec.source_user or spec.email, timeout=self.timeout)

    @staticmethod
    def _size_limit(spec: MailboxSpec) -> int:
        return int(spec.target.options.get("max_message_bytes", EXCHANGE_MAX_MESSAGE_BYTES))

    def writer(self, spec: MailboxSpec) -> GraphWriter:
        return GraphWriter(
            lambda: self._graph(spec),
            self._user(spec),
            mode=import_mode(spec.target.options),
            size_limit=self._size_limit(spec),
        )

    def translate(self, exc: BaseException) -> BaseException:
        import imapclient.exceptions as imap_errors

        if isinstance(exc, EngineError | imap_errors.IMAPClientError | OSError):
            return engine_error(exc, "source")
        return exc

    def preflight(self, spec: MailboxSpec) -> PreflightResult:
        """The target user has a mailbox Graph reaches (TARGET_MISSING / NOT_LICENSED), the mailbox fits its
        quota (OVER_QUOTA, the quota from the user's Exchange service plan or options.quota_bytes) and no
        source message is over the target's message limit, 150 MB by default (ITEM_TOO_LARGE)."""
        reader = None
        try:
            import_mode(spec.target.options)
            graph = self._graph(spec)
            kind = check_target(graph, self._user(spec))
            reader = self.reader(spec)
            reader.open()
            size, count = spec.size_bytes, spec.item_count
            if not size:
                count = size = 0
                for folder in reader.folders():
                    n, b = reader.totals(folder)
                    count, size = count + n, size + b
            quota = mailbox_quota(graph, self._user(spec), kind, spec.target.options)
            blocked = over_quota(size, quota, count=count, what="quota") or items_too_large(
                reader, self._size_limit(spec), size=size, count=count
            )
            if blocked is not None:
                blocked.target_kind = kind
                return blocked
            return PreflightResult(
                ok=True,
                source_size_bytes=size,
                source_item_count=count,
                target_free_bytes=quota,
                target_kind=kind,
            )
        except PermanentError as exc:
            return PreflightResult(ok=False, code=exc.code, message=exc.message)
        except EngineError:
            raise
        except Exception as exc:
            raise engine_error(exc, "source") from exc
        finally:
            if reader is not None:
                reader.close()


__all__ = [
    "MARKER",
    "PR_CLIENT_SUBMIT_TIME",
    "PR_MESSAGE_DELIVERY_TIME",
    "PR_MESSAGE_FLAGS",
    "GraphEngine",
    "GraphWriter",
    "message_json",
]
