"""One copy pipeline for every engine: a SourceReader and a TargetWriter (protocols.py) composed by
CopyPipeline (copy.py), which owns planning, batching, the workers, the checkpoint, dedupe, the cutover delta
(delta.py), fencing and progress. PipelineEngine (engine.py) turns a reader and a writer into an Engine.
docs/adr/016-copy-pipeline.md says where each responsibility lives."""

from migrations_app.engines.pipeline.copy import CHECKPOINT_VERSION, CopyPipeline, upgrade_checkpoint
from migrations_app.engines.pipeline.engine import DELETE_POLICIES, PipelineEngine
from migrations_app.engines.pipeline.protocols import (
    ANSWERED,
    DRAFT,
    FLAGGED,
    ROLES,
    SEEN,
    SYSTEM_FLAGS,
    Folder,
    Item,
    Page,
    Payload,
    SourceReader,
    TargetFolder,
    TargetItem,
    TargetWriter,
    Written,
    item_key,
    message_id,
)

__all__ = [
    "ANSWERED",
    "CHECKPOINT_VERSION",
    "DELETE_POLICIES",
    "DRAFT",
    "FLAGGED",
    "ROLES",
    "SEEN",
    "SYSTEM_FLAGS",
    "CopyPipeline",
    "Folder",
    "Item",
    "Page",
    "Payload",
    "PipelineEngine",
    "SourceReader",
    "TargetFolder",
    "TargetItem",
    "TargetWriter",
    "Written",
    "item_key",
    "message_id",
    "upgrade_checkpoint",
]
