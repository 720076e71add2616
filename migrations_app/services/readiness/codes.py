"""Why a mailbox is blocked, in words a person can act on: one table for the pages, the API and the CSV
exports. The codes are the engines' stable pre-flight codes (engines/base.py); never rename one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockedReason:
    code: str
    title: str
    action: str

    @property
    def text(self) -> str:
        return f"{self.title}: {self.action}"


_TABLE = [
    BlockedReason(
        "NOT_LICENSED",
        "No Exchange Online licence",
        "assign one in the Microsoft 365 admin centre, then check again",
    ),
    BlockedReason(
        "TARGET_MISSING",
        "No target mailbox",
        "create the user in Microsoft 365 (or correct the target UPN in the inventory), then check again",
    ),
    BlockedReason(
        "OVER_QUOTA",
        "Too big for the target mailbox",
        "raise the target's quota or archive mail at the source, then check again",
    ),
    BlockedReason(
        "ITEM_TOO_LARGE",
        "Items larger than Exchange Online accepts (150 MB)",
        "ask the user to save those attachments elsewhere and delete them, then check again",
    ),
    BlockedReason(
        "AUTH_FAILED",
        "The migration account cannot sign in",
        "the programme office checks the endpoint's credentials and permissions, then checks again",
    ),
    BlockedReason(
        "TLS_FAILED",
        "Secure connection refused",
        "the programme office checks the endpoint's certificate settings, then checks again",
    ),
    BlockedReason(
        "PROTOCOL",
        "The server gave an answer we cannot use",
        "report it to the programme office with the mailbox address",
    ),
]
REASONS: dict[str, BlockedReason] = {r.code: r for r in _TABLE}
UNKNOWN = BlockedReason("", "Blocked", "report it to the programme office with the mailbox address")


def blocked_reason(code: str) -> BlockedReason:
    """The explanation for a code; an unknown code still gets one (it is shown, never hidden)."""
    return REASONS.get(code) or BlockedReason(code, f"Blocked ({code or 'no code'})", UNKNOWN.action)
