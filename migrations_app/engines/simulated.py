"""A pretend engine for demos and national-scale drills: no servers, deterministic by seed.

The outcome of a sync is a pure function of (seed, email, size, item count, options, checkpoint):
- permanent failures (AUTH_FAILED, TARGET_MISSING, ...) are a property of the mailbox, rolled once from
  (seed, email), so retrying never cures them — as in life;
- retryable failures (THROTTLED, NETWORK, SERVER_BUSY) are rolled per attempt from (seed, email, attempt),
  where attempt comes from the checkpoint, so a retry from the saved checkpoint gets a fresh roll;
- the copy is reported in chunks and resumes from the checkpoint without copying anything twice.

A rate is the probability that one sync attempt of one mailbox fails with that code. `preflight_rates` are the
probabilities that pre-flight blocks a mailbox with a code (NOT_LICENSED, TARGET_MISSING, OVER_QUOTA,
ITEM_TOO_LARGE, ...), rolled from (seed, email, target user): correcting the target user in the inventory
re-rolls, as provisioning the right account would. Throughput 0 or
instant=True means no waiting at all: 22,000 mailboxes take well under a second of engine time.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable

from migrations_app.engines.base import (
    AUTH_FAILED,
    ERROR_CODES,
    ITEM_TOO_LARGE,
    NOT_LICENSED,
    OVER_QUOTA,
    PERMANENT_CODES,
    PREFLIGHT_CODES,
    RETRYABLE_CODES,
    SKIP_TOO_BIG,
    TARGET_MISSING,
    TLS_FAILED,
    Engine,
    FolderComparison,
    FolderSync,
    MailboxSpec,
    PreflightResult,
    ProgressCallback,
    SkippedItem,
    SyncResult,
    VerifyResult,
    error_for,
)

# How a typical mailbox splits over its folders (fractions of items and bytes).
FOLDER_SHARES = (("Inbox", 0.45), ("Sent Items", 0.25), ("Archive", 0.2), ("Deleted Items", 0.1))

# Permanent failures found at login, before anything is copied (preflight reports these).
_AT_LOGIN = frozenset({AUTH_FAILED, TARGET_MISSING, TLS_FAILED})

_MESSAGES = {
    AUTH_FAILED: "simulated: the server refused the credentials",
    TARGET_MISSING: "simulated: the target mailbox does not exist",
    OVER_QUOTA: "simulated: the target mailbox is full",
    TLS_FAILED: "simulated: certificate verification failed",
    NOT_LICENSED: "simulated: MailboxNotEnabledForRESTAPI: the user has no Exchange Online licence",
    ITEM_TOO_LARGE: "simulated: an item is larger than the target's 150 MB message limit",
}


_HUGE = {"folder": "INBOX", "id": 4242, "size": 412_000_000, "subject": "Theatre video (simulated)"}


class SimulatedEngine(Engine):
    kind = "simulated"

    def __init__(
        self,
        *,
        throughput_bytes_per_s: float = 50_000_000,
        instant: bool = False,
        failure_rates: dict[str, float] | None = None,
        chunk_bytes: int = 256 * 1024 * 1024,
        max_chunks: int = 64,
        skip_rate: float = 0.0,
        target_quota_bytes: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        run_log: str | None = None,
        die_on: str | None = None,
        preflight_rates: dict[str, float] | None = None,
    ):
        failure_rates = dict(failure_rates or {})
        preflight_rates = dict(preflight_rates or {})
        if set(preflight_rates) - PREFLIGHT_CODES:
            raise ValueError(f"unknown pre-flight codes: {sorted(set(preflight_rates) - PREFLIGHT_CODES)}")
        if any(not 0 <= rate <= 1 for rate in preflight_rates.values()):
            raise ValueError("pre-flight rates are probabilities between 0 and 1")
        self.preflight_rates = sorted((c, r) for c, r in preflight_rates.items() if r)
        unknown = set(failure_rates) - ERROR_CODES
        if unknown:
            raise ValueError(f"unknown error codes in failure_rates: {sorted(unknown)}")
        if any(not 0 <= rate <= 1 for rate in failure_rates.values()):
            raise ValueError("failure rates are probabilities between 0 and 1")
        if throughput_bytes_per_s < 0 or chunk_bytes <= 0 or max_chunks <= 0:
            raise ValueError("throughput must be >= 0, chunk_bytes and max_chunks > 0")
        self.throughput = float(throughput_bytes_per_s)
        self.instant = instant or self.throughput == 0
        # Sorted so the roll order, and so the outcome, never depends on dict order.
        self.permanent_rates = sorted((c, r) for c, r in failure_rates.items() if c in PERMANENT_CODES and r)
        self.retryable_rates = sorted((c, r) for c, r in failure_rates.items() if c in RETRYABLE_CODES and r)
        self.chunk_bytes = chunk_bytes
        self.max_chunks = max_chunks
        self.skip_rate = skip_rate
        self.target_quota_bytes = target_quota_bytes
        self.sleep = sleep
        # Drills: one line per copy started and ended (time, process, mailbox), to prove afterwards that no
        # mailbox was ever copied by two runs at once. Appends of a short line are atomic.
        self.run_log = run_log
        self.die_on = die_on  # drills: the process dies half way through this mailbox (the OOM killer, say)

    # --- the rolls ------------------------------------------------------------------------------------------

    def _mailbox_fate(self, spec: MailboxSpec) -> tuple[str | None, float, SkippedItem | None]:
        """(permanent failure code or None, where in the copy it strikes, an oversized item or None)."""
        if not self.permanent_rates and not self.skip_rate:
            return None, 0.0, None
        draws = _draws(f"{spec.seed}:{spec.email}:mailbox")
        code = None
        for (candidate, rate), draw in zip(self.permanent_rates, draws[3:], strict=False):
            if draw < rate:
                code = candidate
                break
        skipped = None
        if self.skip_rate and draws[1] < self.skip_rate:
            skipped = SkippedItem(
                folder="Inbox",
                subject=f"Scan of records {1000 + int(draws[2] * 9000)}.pdf",
                size=(150 + int(draws[2] * 250)) * 1024 * 1024,
                reason=f"{SKIP_TOO_BIG}: over the target's 150 MB message limit",
            )
        return code, draws[0], skipped

    def _attempt_fate(self, spec: MailboxSpec, attempt: int) -> tuple[str | None, float]:
        if not self.retryable_rates:
            return None, 0.0
        draws = _draws(f"{spec.seed}:{spec.email}:attempt:{attempt}")
        for (code, rate), draw in zip(self.retryable_rates, draws[1:], strict=False):
            if draw < rate:
                return code, draws[0]
        return None, 0.0

    # --- the interface --------------------------------------------------------------------------------------

    def preflight(self, spec: MailboxSpec) -> PreflightResult:
        code, _, _ = self._mailbox_fate(spec)
        if code in _AT_LOGIN:
            return PreflightResult(ok=False, code=code, message=_MESSAGES[code])
        if self.preflight_rates:
            draws = _draws(f"{spec.seed}:{spec.email}:{spec.target_user}:preflight")
            # one draw for all codes, cumulatively: the rates add up to the share blocked
            roll, edge = draws[0], 0.0
            for candidate, rate in self.preflight_rates:
                edge += rate
                if roll < edge:
                    return PreflightResult(ok=False, code=candidate, message=_MESSAGES[candidate])
        if self.target_quota_bytes is not None and spec.size_bytes > self.target_quota_bytes:
            return PreflightResult(
                ok=False,
                code=OVER_QUOTA,
                message=f"mailbox is {spec.size_bytes} bytes, the target holds {self.target_quota_bytes}",
                source_size_bytes=spec.size_bytes,
                source_item_count=spec.item_count,
                target_free_bytes=self.target_quota_bytes,
            )
        return PreflightResult(
            ok=True,
            source_size_bytes=spec.size_bytes,
            source_item_count=spec.item_count,
            target_free_bytes=self.target_quota_bytes,
        )

    def expected_seconds(self, size_bytes: int) -> float:
        return 0.0 if self.instant else size_bytes / self.throughput

    def _log_run(self, what: str, spec: MailboxSpec) -> None:
        with open(self.run_log, "a") as log:
            log.write(f"{time.time():.6f} {os.getpid()} {what} {spec.email}\n")

    def sync(
        self,
        spec: MailboxSpec,
        checkpoint: dict | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        if self.die_on and spec.email == self.die_on:
            if progress is not None:  # what a real engine would have recorded: the item it was copying
                half = {"engine": self.kind, "items": 0, "bytes": 0, "in_flight": [_HUGE]}
                progress(0, 0, half)
                time.sleep(1.1)  # past MIGRATION_PROGRESS_SECONDS, so the next report is saved
                progress(0, 0, half)
            os._exit(137)
        if not self.run_log:
            return self._sync(spec, checkpoint, progress)
        self._log_run("start", spec)
        try:
            return self._sync(spec, checkpoint, progress)
        finally:
            self._log_run("end", spec)

    def _sync(
        self, spec: MailboxSpec, checkpoint: dict | None, progress: ProgressCallback | None
    ) -> SyncResult:
        cp = dict(checkpoint or {})
        done_bytes = int(cp.get("bytes", 0))
        done_items = int(cp.get("items", 0))
        attempt = int(cp.get("attempt", 0)) + 1
        skipped = [SkippedItem.from_dict(s) for s in cp.get("skipped", [])]
        total_bytes, total_items = spec.size_bytes, spec.item_count
        start_bytes, start_items = done_bytes, done_items

        def snapshot() -> dict:
            return {
                "engine": self.kind,
                "version": 1,
                "attempt": attempt,
                "items": done_items,
                "bytes": done_bytes,
                "skipped": [s.as_dict() for s in skipped],
            }

        def fail(code: str):
            checkpoint_now = snapshot()
            if progress is not None:
                progress(done_items, done_bytes, checkpoint_now)
            return error_for(code, _MESSAGES.get(code, f"simulated {code}"), checkpoint=checkpoint_now)

        permanent, permanent_at, oversized = self._mailbox_fate(spec)
        if permanent in _AT_LOGIN:
            raise fail(permanent)
        if oversized is not None and not skipped:
            skipped.append(oversized)

        retryable, retryable_at = self._attempt_fate(spec, attempt)
        # The byte offsets where this attempt stops, if it does: a permanent failure strikes at a fixed point
        # of the mailbox, a retryable one part-way through what is left.
        stops = []
        if permanent is not None:
            stops.append((int(total_bytes * permanent_at), permanent))
        if retryable is not None:
            stops.append((done_bytes + int((total_bytes - done_bytes) * retryable_at), retryable))
        stop_at, stop_code = min(stops) if stops else (None, None)

        chunk = max(self.chunk_bytes, -(-total_bytes // self.max_chunks), 1)
        while done_bytes < total_bytes or done_items < total_items:
            if stop_at is not None and done_bytes >= stop_at:
                raise fail(stop_code)
            step_end = min(total_bytes, done_bytes + chunk)
            if stop_at is not None and done_bytes < stop_at < step_end:
                step_end = stop_at
            step = step_end - done_bytes
            if not self.instant and step:
                self.sleep(step / self.throughput)
            done_bytes = step_end
            # Items follow the bytes in proportion, so the two reach their totals together.
            done_items = total_items if done_bytes >= total_bytes else total_items * done_bytes // total_bytes
            if progress is not None:
                progress(done_items, done_bytes, snapshot())
        if stop_code is not None and stop_code == permanent:
            raise fail(stop_code)  # an empty mailbox still meets its permanent fate

        return SyncResult(
            items_copied=done_items - start_items,
            bytes_copied=done_bytes - start_bytes,
            checkpoint=snapshot(),
            folders=[
                FolderSync(folder=name, target_folder=name, items_copied=items, bytes_copied=size)
                for name, items, size in _split(done_items - start_items, done_bytes - start_bytes)
            ],
            skipped=skipped,
        )

    def verify(self, spec: MailboxSpec) -> VerifyResult:
        return VerifyResult(
            folders=[
                FolderComparison(name, name, items, size, items, size)
                for name, items, size in _split(spec.item_count, spec.size_bytes)
            ]
        )


def _draws(key: str) -> list[float]:
    """Eight uniform numbers in [0, 1) that depend only on key. One blake2b call: ten times cheaper than
    seeding a random.Random, which matters at 22,000 mailboxes a drill (and stable across Python versions)."""
    return [n * _TO_UNIT for n in _EIGHT_U64.unpack(hashlib.blake2b(key.encode(), digest_size=64).digest())]


_EIGHT_U64 = struct.Struct(">8Q")
_TO_UNIT = 1 / 2**64


def _split(items: int, size: int) -> list[tuple[str, int, int]]:
    """Share items and bytes over FOLDER_SHARES; the last folder takes the rounding so the sums are exact."""
    out, items_left, size_left = [], items, size
    for index, (name, share) in enumerate(FOLDER_SHARES):
        last = index == len(FOLDER_SHARES) - 1
        n = items_left if last else int(items * share)
        b = size_left if last else int(size * share)
        out.append((name, n, b))
        items_left -= n
        size_left -= b
    return out
