"""The exchange engine's settings step: read the mailbox's settings from Exchange 2013 (ews_settings), write them to
Exchange Online (graph_settings), and say what happened to each, for the checkpoint (and so the mailbox page and
the skipped-settings CSV). Plain Python: no Django."""

from __future__ import annotations

import datetime as dt

from migrations_app.engines.ews_settings import EwsSettingsReader
from migrations_app.engines.graph_settings import GraphSettingsWriter


def folder_map(checkpoint: dict) -> dict[str, str]:
    """Source folder id -> target folder id, for the folders the pipeline copied."""
    out = {}
    for key, entry in (checkpoint.get("folders") or {}).items():
        target_id = (entry.get("target_state") or {}).get("target_id")
        if target_id:
            out[key] = target_id
    return out


def move_settings(source_mailbox, target, checkpoint: dict, *, phase: str) -> dict:
    """{"at", "phase", "records": [{"setting", "name", "outcome": applied|skipped, "detail"}]}. `source_mailbox` is
    the reader's EwsMailbox, `target` the writer's GraphImportTarget (its GraphClient and user)."""
    settings, problems = EwsSettingsReader(source_mailbox).read()
    records = problems + GraphSettingsWriter(target.graph, target.user).apply(
        settings.as_dict(), folder_map(checkpoint)
    )
    return {
        "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "phase": phase,
        "records": records,
    }
