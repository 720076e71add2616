"""Fencing: a run keeps its lease on the mailbox it copies, and never writes to the target once it has lost it.

A LeaseKeeper is a thread per mailbox run, independent of the engine: every MIGRATION_HEARTBEAT_SECONDS it
renews the lease with a conditional UPDATE (this run's lease, not paused) that moves heartbeat_at, so a run
whose engine is silent for a long time (planning a huge folder, indexing a target, a slow upload) is never
taken for dead by the reconciler. When the UPDATE matches nothing, the lease was lost (the reconciler handed
the mailbox to another run, a person cancelled it) or the mailbox was paused.

`fence()` is what the copy pipeline calls before every write to the target, from any of its threads: it asks
the keeper to check the lease now (one indexed UPDATE, which is also a heartbeat) and raises LeaseLost or
PauseRequested when it is no longer ours, so a run that lost its lease stops within one batch.

The keeper uses its own database connection, which cannot see the rows of a transaction that is still open
on the run's thread. A run inside an open transaction (only tests do that) gets no thread: the engine's
progress and idle heartbeats (on the run's thread) keep the lease, and fence() checks what they found.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from migrations_app.models import Mailbox
from migrations_app.services.execution.states import LeaseLost, PauseRequested

logger = logging.getLogger(__name__)

OURS, LOST, PAUSED = "ours", "lost", "paused"


def lease_renew(*, mailbox_id: int, lease: str, **fields) -> str:
    """One conditional UPDATE: the heartbeat (and any fields given) if the lease is ours and the mailbox not
    paused. Returns OURS, PAUSED or LOST."""
    now = timezone.now()
    if Mailbox.objects.filter(pk=mailbox_id, lease=lease, paused=False).update(
        heartbeat_at=now, updated_at=now, **fields
    ):
        return OURS
    if Mailbox.objects.filter(pk=mailbox_id, lease=lease, paused=True).exists():
        return PAUSED
    return LOST


class LeaseKeeper:
    def __init__(self, mailbox_id: int, lease: str):
        self.mailbox_id = mailbox_id
        self.lease = lease
        self.state = OURS
        self.confirmed = time.monotonic()
        self.interval = settings.MIGRATION_HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._wanted = threading.Event()
        self._lock = threading.Condition()
        self._asked = 0
        self._answered = 0
        self.thread: threading.Thread | None = None

    # --- the run's side -------------------------------------------------------------------------------------

    def start(self) -> LeaseKeeper:
        if connection.in_atomic_block:
            return self  # see the module docstring: the run's own thread keeps the lease
        self.thread = threading.Thread(target=self._run, name=f"lease-{self.mailbox_id}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def note(self, state: str) -> None:
        """What the run's own thread found (its progress saves and idle heartbeats)."""
        with self._lock:
            self.state = state
            if state == OURS:
                self.confirmed = time.monotonic()

    def fence(self) -> None:
        """Raise unless the lease is still ours now. Called before every write to the target."""
        if self.thread is not None and self.thread.is_alive() and self.state == OURS:
            with self._lock:
                self._asked += 1
                ticket = self._asked
                self._wanted.set()
                self._lock.wait_for(lambda: self._answered >= ticket or self.state != OURS, timeout=30)
                if self._answered < ticket and self.state == OURS:
                    self.state = LOST  # the database did not answer: we cannot prove the lease is ours
        self.raise_unless_ours()

    def raise_unless_ours(self) -> None:
        if self.state == PAUSED:
            raise PauseRequested(self.mailbox_id)
        if self.state == LOST:
            raise LeaseLost(self.mailbox_id)
        if time.monotonic() - self.confirmed > settings.MIGRATION_HEARTBEAT_STALE_SECONDS / 2:
            # Nobody confirmed the lease for half the staleness limit: the reconciler may take it any moment.
            raise LeaseLost(self.mailbox_id)

    # --- the keeper thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wanted.wait(timeout=self.interval)
                if self._stop.is_set():
                    break
                self._wanted.clear()
                with self._lock:
                    ticket = self._asked
                try:
                    state = lease_renew(mailbox_id=self.mailbox_id, lease=self.lease)
                except Exception:  # noqa: BLE001 - a database blip: fence() refuses once it lasts too long
                    logger.warning("mailbox %s: heartbeat failed", self.mailbox_id, exc_info=True)
                    continue
                with self._lock:
                    self.state = state if self.state == OURS else self.state
                    if state == OURS:
                        self.confirmed = time.monotonic()
                    self._answered = max(self._answered, ticket)
                    self._lock.notify_all()
                if state != OURS:
                    logger.warning("mailbox %s: lease %s", self.mailbox_id, state)
                    break
        finally:
            with self._lock:
                self._answered = self._asked
                self._lock.notify_all()
            connections.close_all()  # this thread's own connection
