"""What every engine promises the orchestrator: the specs it is given, the results it returns, the errors it
raises. Plain Python on purpose: engines know nothing of Django and never touch the database; the
orchestrator saves the checkpoints and the progress they report.

Error codes are stable strings: they end up in Mailbox.last_error and in reports, so never rename one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# --- stable error codes -------------------------------------------------------------------------------------

AUTH_FAILED = "AUTH_FAILED"  # bad credentials on either side
TARGET_MISSING = "TARGET_MISSING"  # the target mailbox does not exist (not provisioned yet)
OVER_QUOTA = "OVER_QUOTA"  # the target is full, or too small for the mailbox
TLS_FAILED = "TLS_FAILED"  # certificate or handshake refused: configuration, not a blip
NETWORK = "NETWORK"  # refused, reset, timed out
THROTTLED = "THROTTLED"  # the server asked us to slow down
SERVER_BUSY = "SERVER_BUSY"  # [UNAVAILABLE], [INUSE], BYE
PROTOCOL = "PROTOCOL"  # the server answered something we cannot work with
SOURCE_MISSING = "SOURCE_MISSING"  # the source has no such mailbox (exchange: ErrorNonExistentMailbox)
IMPERSONATION_REFUSED = "IMPERSONATION_REFUSED"  # the service account may not impersonate the mailbox

# Found by pre-flight (a mailbox blocked before it is planned). NOT_LICENSED is also what a copy raises when
# Graph answers MailboxNotEnabledForRESTAPI (a licence removed after pre-flight).
NOT_LICENSED = "NOT_LICENSED"  # the target exists but has no Exchange Online licence (no mailbox enabled)
ITEM_TOO_LARGE = "ITEM_TOO_LARGE"  # the source holds items larger than the target accepts
PREFLIGHT_CODES = frozenset(
    {AUTH_FAILED, TARGET_MISSING, NOT_LICENSED, OVER_QUOTA, ITEM_TOO_LARGE, TLS_FAILED}
)

RETRYABLE_CODES = frozenset({NETWORK, THROTTLED, SERVER_BUSY})
PERMANENT_CODES = frozenset(
    {
        AUTH_FAILED,
        TARGET_MISSING,
        NOT_LICENSED,
        OVER_QUOTA,
        TLS_FAILED,
        PROTOCOL,
        SOURCE_MISSING,
        IMPERSONATION_REFUSED,
    }
)
ERROR_CODES = RETRYABLE_CODES | PERMANENT_CODES

# Reasons an item is skipped (listed in SyncResult.skipped, never silently dropped).
SKIP_TOO_BIG = "TOO_BIG"  # over the target's APPENDLIMIT or the configured size limit
SKIP_REJECTED = "REJECTED"  # the target answered NO to the APPEND
SKIP_CORRUPT = "CORRUPT"  # the source could not export the item (exchange: ErrorCorruptData and the like)
SKIP_SEARCH_FOLDER = "SEARCH_FOLDER"  # a search folder: a saved query, not content (listed, never copied)


class EngineError(Exception):
    """Base of everything an engine raises on purpose. `checkpoint`, when set, is the last consistent
    checkpoint at the moment of failure (the same one last given to progress), so a retry resumes."""

    retryable = False

    def __init__(self, code: str, message: str = "", *, checkpoint: dict | None = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.checkpoint = checkpoint


class RetryableError(EngineError):
    """Try again later (network, throttled, server busy). `retry_after` is the server's hint, in seconds."""

    retryable = True

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        retry_after: float | None = None,
        checkpoint: dict | None = None,
    ):
        super().__init__(code, message, checkpoint=checkpoint)
        self.retry_after = retry_after


class PermanentError(EngineError):
    """Retrying will not help until a person fixes something (credentials, target, quota)."""


def error_for(code: str, message: str = "", **kwargs: Any) -> EngineError:
    """The right error class for a code: retryable codes give RetryableError, the rest PermanentError."""
    if code in RETRYABLE_CODES:
        return RetryableError(code, message, **kwargs)
    kwargs.pop("retry_after", None)
    return PermanentError(code, message, **kwargs)


# --- specs --------------------------------------------------------------------------------------------------

Security = Literal["tls", "starttls", "plain"]


@dataclass(frozen=True)
class EndpointSpec:
    """One side of a move. `options` carries engine-specific settings, e.g. for imap: ca_file,
    max_message_bytes (a size limit on the target), timeout, master_user_separator."""

    kind: str
    host: str = ""
    port: int = 0
    security: Security = "tls"
    username: str = ""
    password: str = field(default="", repr=False)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MailboxSpec:
    email: str
    source: EndpointSpec
    target: EndpointSpec
    source_user: str = ""
    target_user: str = ""
    size_bytes: int = 0
    item_count: int = 0
    seed: int = 0  # only the simulated engine uses it


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class SkippedItem:
    folder: str
    subject: str
    size: int
    reason: str  # SKIP_TOO_BIG, SKIP_REJECTED, ... followed by the server's words where there are any
    uid: int | None = None

    def as_dict(self) -> dict:
        return {
            "folder": self.folder,
            "subject": self.subject,
            "size": self.size,
            "reason": self.reason,
            "uid": self.uid,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SkippedItem:
        return cls(data["folder"], data["subject"], data["size"], data["reason"], data.get("uid"))


@dataclass
class PreflightResult:
    """ok=False carries a stable code and a reason a person can act on (the mailbox becomes `blocked`).
    Transient trouble (network, busy) is raised as RetryableError instead, so it is retried, not blocked."""

    ok: bool
    code: str = ""
    message: str = ""
    source_size_bytes: int | None = None
    source_item_count: int | None = None
    target_free_bytes: int | None = None  # None: the target does not say (no quota)
    target_kind: str | None = None  # what the target says the mailbox is (graph: user, shared, room, ...)
    # What the engine found, kept on the mailbox for its page (exchange: {"classes": {mail: n, ...},
    # "too_large": [{folder, subject, size}]}); None when the engine says nothing more.
    details: dict | None = None


@dataclass
class FolderSync:
    folder: str  # source name
    target_folder: str
    items_copied: int = 0
    bytes_copied: int = 0
    items_skipped: int = 0
    items_already_there: int = 0  # found on the target by the dedupe index, not copied again
    flags_updated: int = 0  # messages copied earlier whose flags were brought up to date (the cutover delta)
    items_moved: int = 0  # moved into this folder on the target by the cutover delta, not copied again
    items_deleted: int = 0  # deleted on the target by the cutover delta (the source no longer has them)


@dataclass
class SyncResult:
    """items/bytes_copied: this call. checkpoint["items"]/["bytes"]: the mailbox's totals across calls.
    `skipped` lists every item skipped so far for this mailbox (it lives in the checkpoint)."""

    items_copied: int
    bytes_copied: int
    checkpoint: dict
    folders: list[FolderSync] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)


@dataclass
class FolderComparison:
    folder: str
    target_folder: str
    source_count: int
    source_bytes: int
    target_count: int
    target_bytes: int
    # False where the two sides measure size differently (Exchange item sizes are not MIME sizes): counts only.
    compare_bytes: bool = True
    # By item (engines on the copy pipeline): subjects of source items with no copy on the target, and of the
    # portal's copies on the target whose source item is gone. Either one fails the comparison.
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        if self.missing or self.extra:
            return False
        if not self.compare_bytes:
            return self.source_count == self.target_count
        return self.source_count == self.target_count and self.source_bytes == self.target_bytes

    def describe(self) -> str:
        """In words, for a person: which folder, the counts, and the items by subject."""
        text = f"{self.folder}: {self.source_count} on the source, {self.target_count} on the target"
        if self.missing:
            text += "; missing: " + ", ".join(repr(s) for s in self.missing[:5])
        if self.extra:
            text += "; extra: " + ", ".join(repr(s) for s in self.extra[:5])
        return text


@dataclass
class VerifyResult:
    folders: list[FolderComparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.matches for f in self.folders)

    @property
    def differences(self) -> list[FolderComparison]:
        return [f for f in self.folders if not f.matches]


# progress(items_copied, bytes_copied, checkpoint): the mailbox's running totals (the same numbers as
# checkpoint["items"] / ["bytes"]) and a checkpoint to save. Called on the caller's thread. If it raises,
# the sync stops and the exception propagates; the last checkpoint it was given is safe to resume from.
# A progress object may also have a `fence()` method: engines on the copy pipeline call it (from any thread)
# before every write to the target; it raises when the run no longer owns the mailbox (its lease was lost).
ProgressCallback = Callable[[int, int, dict], None]


class Engine(abc.ABC):
    kind: str = ""
    # A planning figure for sizing work, not a promise: what one connection of this engine moves per second.
    expected_bytes_per_s: float = 20_000_000

    def expected_seconds(self, size_bytes: int) -> float:
        """Roughly how long a mailbox of this size takes: the orchestrator gives slow mailboxes a task each
        and lets quick ones share."""
        return size_bytes / self.expected_bytes_per_s

    @abc.abstractmethod
    def preflight(self, spec: MailboxSpec) -> PreflightResult: ...

    @abc.abstractmethod
    def sync(
        self,
        spec: MailboxSpec,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult: ...

    @abc.abstractmethod
    def verify(self, spec: MailboxSpec) -> VerifyResult: ...

    def cutover(
        self,
        spec: MailboxSpec,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """The final pass inside the window: bring the target up to date with everything that changed on
        the source since the previous pass. Engines on the copy pipeline also carry flag changes, moves and
        deletions (engines.pipeline.delta); by default it is another sync."""
        return self.sync(spec, checkpoint, progress)
