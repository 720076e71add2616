"""An Engine made of a source reader and a target writer, run by the copy pipeline. A concrete engine says
how to build its reader and writer from a MailboxSpec, how to translate its libraries' exceptions, and its
preflight; sync, cutover and verify are the pipeline's."""

from __future__ import annotations

import abc

from migrations_app.engines.base import (
    PROTOCOL,
    Engine,
    MailboxSpec,
    PermanentError,
    ProgressCallback,
    SyncResult,
    VerifyResult,
)
from migrations_app.engines.pipeline.copy import CopyPipeline
from migrations_app.engines.pipeline.protocols import SourceReader, TargetWriter

# What the cutover may delete on the target (per endpoint: options["delete_policy"] on the target endpoint).
#   copied: what the portal itself copied and the source no longer has (the default)
#   never:  nothing; moves and flags are still carried
DELETE_POLICIES = ("copied", "never")


class PipelineEngine(Engine):
    connections: int = 3
    batch_bytes: int = 6 * 1024 * 1024
    batch_messages: int = 250
    large_item_bytes: int = 16 * 1024 * 1024
    timeout: float = 60.0

    @abc.abstractmethod
    def reader(self, spec: MailboxSpec) -> SourceReader: ...

    @abc.abstractmethod
    def writer(self, spec: MailboxSpec) -> TargetWriter: ...

    def translate(self, exc: BaseException) -> BaseException:
        """A reader's or writer's library exception as one of ours (engines.base); anything else (a bug, a
        progress callback or fence that raised) is returned as it is and raised unchanged."""
        return exc

    def pipeline(self, spec: MailboxSpec) -> CopyPipeline:
        return CopyPipeline(
            self.reader(spec),
            self.writer(spec),
            kind=self.kind,
            connections=self.connections,
            batch_bytes=self.batch_bytes,
            batch_messages=self.batch_messages,
            large_item_bytes=self.large_item_bytes,
            translate=self.translate,
            join_timeout=self.timeout,
        )

    @staticmethod
    def delete_policy(spec: MailboxSpec) -> str:
        policy = spec.target.options.get("delete_policy", "copied")
        if policy not in DELETE_POLICIES:
            raise PermanentError(
                PROTOCOL, f"target: delete_policy must be one of {', '.join(DELETE_POLICIES)}"
            )
        return policy

    def sync(
        self,
        spec: MailboxSpec,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        return self.pipeline(spec).sync(checkpoint, progress)

    def cutover(
        self,
        spec: MailboxSpec,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """New items, then flags, moves and deletions since the previous pass (engines.pipeline.delta)."""
        return self.pipeline(spec).sync(
            checkpoint, progress, delta=True, delete_policy=self.delete_policy(spec)
        )

    def verify(self, spec: MailboxSpec) -> VerifyResult:
        return self.pipeline(spec).verify()
