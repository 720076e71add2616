"""Pre-flight findings shared by the engines that read an IMAP source: items too large for the target, and
a mailbox too large for the target's quota, each as a PreflightResult a person can act on."""

from __future__ import annotations

from migrations_app.engines.base import ITEM_TOO_LARGE, OVER_QUOTA, PreflightResult


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def items_too_large(reader, limit: int | None, *, size: int, count: int) -> PreflightResult | None:
    """ITEM_TOO_LARGE when the source holds messages over the target's per-message limit (SEARCH LARGER on
    the source, so the server does the work), naming the biggest by folder, size and subject."""
    if not limit:
        return None
    found, examples = reader.larger_than(limit)
    if not found:
        return None
    listed = "; ".join(
        f"{folder}: {subject or '(no subject)'!r} ({_mb(n)})" for folder, n, subject in examples
    )
    return PreflightResult(
        ok=False,
        code=ITEM_TOO_LARGE,
        message=(
            f"{found} message(s) are larger than the target accepts ({_mb(limit)}), for example {listed}"
        ),
        source_size_bytes=size,
        source_item_count=count,
        # kept on the mailbox for its page, as the exchange engine's pre-flight keeps its own
        details={"too_large": [{"folder": f, "subject": subject, "size": n} for f, n, subject in examples]},
    )


def over_quota(size: int, free: int | None, *, count: int, what: str = "free") -> PreflightResult | None:
    if free is None or size <= free:
        return None
    return PreflightResult(
        ok=False,
        code=OVER_QUOTA,
        message=f"the mailbox holds {_mb(size)}, the target has {_mb(free)} {what}",
        source_size_bytes=size,
        source_item_count=count,
        target_free_bytes=free,
    )
