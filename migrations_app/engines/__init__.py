"""Engines move one mailbox from a source to a target. Plain Python: no Django imports anywhere in here.

    engine = get_engine("imap", connections=4)
    engine.preflight(spec); engine.sync(spec, checkpoint, progress); engine.verify(spec)

Engines are imported lazily, so using the simulated engine never imports imapclient (or msal, for graph).
"""

from __future__ import annotations

import importlib

from migrations_app.engines.base import (
    AUTH_FAILED,
    ERROR_CODES,
    IMPERSONATION_REFUSED,
    NETWORK,
    OVER_QUOTA,
    PERMANENT_CODES,
    PROTOCOL,
    RETRYABLE_CODES,
    SERVER_BUSY,
    SOURCE_MISSING,
    TARGET_MISSING,
    THROTTLED,
    TLS_FAILED,
    EndpointSpec,
    Engine,
    EngineError,
    FolderComparison,
    FolderSync,
    MailboxSpec,
    PermanentError,
    PreflightResult,
    ProgressCallback,
    RetryableError,
    SkippedItem,
    SyncResult,
    VerifyResult,
    error_for,
)

# kind -> "module:Class"; another engine registers itself with one line here (or register_engine()).
_REGISTRY: dict[str, str] = {
    "simulated": "migrations_app.engines.simulated:SimulatedEngine",
    "imap": "migrations_app.engines.imap:ImapEngine",
    "graph": "migrations_app.engines.graph:GraphEngine",
    "exchange": "migrations_app.engines.exchange:ExchangeEngine",
}


def register_engine(kind: str, target: str) -> None:
    """target is "package.module:ClassName"; imported on first get_engine(kind)."""
    _REGISTRY[kind] = target


def engine_kinds() -> list[str]:
    return sorted(_REGISTRY)


def get_engine(kind: str, **options) -> Engine:
    try:
        target = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown engine kind {kind!r}; known: {', '.join(engine_kinds())}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)


__all__ = [
    "AUTH_FAILED",
    "ERROR_CODES",
    "IMPERSONATION_REFUSED",
    "NETWORK",
    "OVER_QUOTA",
    "PERMANENT_CODES",
    "PROTOCOL",
    "RETRYABLE_CODES",
    "SERVER_BUSY",
    "SOURCE_MISSING",
    "TARGET_MISSING",
    "THROTTLED",
    "TLS_FAILED",
    "Engine",
    "EndpointSpec",
    "EngineError",
    "FolderComparison",
    "FolderSync",
    "MailboxSpec",
    "PermanentError",
    "PreflightResult",
    "ProgressCallback",
    "RetryableError",
    "SkippedItem",
    "SyncResult",
    "VerifyResult",
    "engine_kinds",
    "error_for",
    "get_engine",
    "register_engine",
]
