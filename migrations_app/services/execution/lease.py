"""Fencing: a run keeps its lease on the mailbox it copies, and never writes to the target once it has lost it.

Each run has a LeaseKeeper; the keepers of one worker process share one thread, the process's LeaseHub, which
renews their leases whatever the engines do: every MIGRATION_HEARTBEAT_SECONDS it moves heartbeat_at of every
lease that is due in one conditional UPDATE (this run's lease, not paused), so a run whose engine is silent for
a long time (planning a huge folder, indexing a target, a slow upload) is never taken for dead by the
reconciler. A lease the UPDATE does not match was lost (the reconciler handed the mailbox to another run, a
person cancelled it) or its mailbox was paused. One thread and one database connection per process, not per
copy: a worker carrying hundreds of copies at once pays one statement per beat (docs/adr/031).

`fence()` is what the copy pipeline calls before every write to the target, from any of its threads: it asks
the hub to check this lease now (the checks asked for at the same moment share one UPDATE, which is also a
heartbeat) and raises LeaseLost or PauseRequested when it is no longer ours, so a run that lost its lease stops
within one batch.

The hub uses its own database connection, which cannot see the rows of a transaction that is still open on the
run's thread. A run inside an open transaction (only tests do that) is not handed to the hub: the engine's
progress and idle heartbeats (on the run's thread) keep the lease, and fence() checks what they found.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from migrations_app.models import Mailbox
from migrations_app.services.execution.states import LeaseLost, PauseRequested

logger = logging.getLogger(__name__)

OURS, LOST, PAUSED = "ours", "lost", "paused"
# Fences asked within this long of each other share one UPDATE.
COALESCE_SECONDS = 0.02


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


def leases_renew(leases: dict[int, str]) -> dict[int, str]:
    """The heartbeat of many runs' leases at once ({mailbox id: lease}): one UPDATE ... FROM unnest() on
    PostgreSQL (one conditional UPDATE per lease elsewhere), then one SELECT for the ones it did not match, to
    tell a pause from a loss. Returns {mailbox id: OURS | PAUSED | LOST}."""
    if not leases:
        return {}
    if connection.vendor != "postgresql":
        return {pk: lease_renew(mailbox_id=pk, lease=lease) for pk, lease in leases.items()}
    now = timezone.now()
    ids, names = zip(*leases.items(), strict=True)
    table = Mailbox._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS m SET heartbeat_at = %s, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::text[]) AS v(id, lease) "
            "WHERE m.id = v.id AND m.lease = v.lease AND NOT m.paused RETURNING m.id",
            [now, now, list(ids), list(names)],
        )
        states = dict.fromkeys((pk for (pk,) in cursor.fetchall()), OURS)
    missed = [pk for pk in ids if pk not in states]
    if missed:
        paused = set(Mailbox.objects.filter(pk__in=missed, paused=True).values_list("id", "lease"))
        for pk in missed:
            states[pk] = PAUSED if (pk, leases[pk]) in paused else LOST
    return states


def _pooled() -> bool:
    return bool(settings.DATABASES["default"].get("OPTIONS", {}).get("pool"))


def connection_release() -> None:
    """With a connection pool (DB_POOL_MAX_SIZE), give this thread's connection back between its writes: a
    copy holds its slot for hours but needs the database for milliseconds at a time, so a worker carrying
    hundreds of copies needs a few connections, not one each. Without a pool (or in a transaction), a no-op."""
    if _pooled() and not connection.in_atomic_block:
        connection.close()


class LeaseKeeper:
    """One run's lease, kept alive by its process's hub."""

    def __init__(self, mailbox_id: int, lease: str):
        self.mailbox_id = mailbox_id
        self.lease = lease
        self.state = OURS
        self.confirmed = time.monotonic()
        self.interval = settings.MIGRATION_HEARTBEAT_SECONDS
        self.due = self.confirmed + self.interval
        self.asked = 0  # fences asked for, and answered by the hub
        self.answered = 0
        self.hub: LeaseHub | None = None

    # --- the run's side -------------------------------------------------------------------------------------

    def start(self) -> LeaseKeeper:
        if connection.in_atomic_block:
            return self  # see the module docstring: the run's own thread keeps the lease
        self.hub = LeaseHub.for_this_process()
        self.hub.add(self)
        return self

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.remove(self)

    @property
    def alive(self) -> bool:
        return self.hub is not None and self.hub.alive() and self.hub.holds(self)

    def note(self, state: str) -> None:
        """What the run's own thread found (its progress saves and idle heartbeats)."""
        hub_lock = self.hub.lock if self.hub is not None else threading.Lock()
        with hub_lock:
            self.state = state
            if state == OURS:
                self.confirmed = time.monotonic()
                self.due = self.confirmed + self.interval

    def fence(self) -> None:
        """Raise unless the lease is still ours now. Called before every write to the target."""
        if self.alive and self.state == OURS:
            hub = self.hub
            with hub.lock:
                self.asked += 1
                ticket = self.asked
                hub.ask()
                hub.lock.wait_for(lambda: self.answered >= ticket or self.state != OURS, timeout=30)
                if self.answered < ticket and self.state == OURS:
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


class LeaseHub:
    """The one thread of a worker process that renews its runs' leases: those due (their heartbeat interval
    passed) and those whose run asked for a fence, together in one statement."""

    _instance: LeaseHub | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def for_this_process(cls) -> LeaseHub:
        with cls._instance_lock:
            hub = cls._instance
            if hub is None or hub.pid != os.getpid() or not hub.alive():
                hub = cls._instance = cls()
            return hub

    def __init__(self):
        self.pid = os.getpid()  # a forked child (prefork pool) starts a hub of its own
        self.lock = threading.Condition()
        self.keepers: set[LeaseKeeper] = set()
        self._wanted = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease-hub", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def add(self, keeper: LeaseKeeper) -> None:
        with self.lock:
            self.keepers.add(keeper)
        self._wanted.set()  # the hub may be asleep for longer than this keeper's interval

    def remove(self, keeper: LeaseKeeper) -> None:
        with self.lock:
            self.keepers.discard(keeper)
            self.lock.notify_all()
            if not self.keepers:
                self._wanted.set()  # the last run ended: the hub lets its connection go

    def holds(self, keeper: LeaseKeeper) -> bool:
        return keeper in self.keepers

    def ask(self) -> None:
        """Called with the lock held: a fence wants an answer now."""
        self._wanted.set()

    def _run(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                idle = not self.keepers
                next_due = min((k.due for k in self.keepers), default=now + 5.0)
            if idle:
                connections.close_all()  # no run to keep: the connection is not held (a test database can go)
            self._wanted.wait(timeout=max(0.0, next_due - now))
            if self._wanted.is_set():
                time.sleep(COALESCE_SECONDS)  # let the fences of the same moment join this round
                self._wanted.clear()
            with self.lock:
                now = time.monotonic()
                round_ = {
                    k: k.asked
                    for k in self.keepers
                    if k.state == OURS and (k.due <= now or k.asked > k.answered)
                }
            if not round_:
                continue
            try:
                states = leases_renew({k.mailbox_id: k.lease for k in round_})
            except Exception:  # noqa: BLE001 - a database blip: fence() refuses once it lasts too long
                logger.warning("lease heartbeat of %d run(s) failed", len(round_), exc_info=True)
                connections.close_all()  # a broken connection is not reused
                with self.lock:
                    for keeper in round_:
                        keeper.due = time.monotonic() + min(keeper.interval, 1.0)
                continue
            finally:
                if _pooled():
                    connections.close_all()  # back to the pool between beats
            with self.lock:
                confirmed = time.monotonic()
                for keeper, ticket in round_.items():
                    state = states.get(keeper.mailbox_id, LOST)
                    if keeper.state == OURS:
                        keeper.state = state
                    if state == OURS:
                        keeper.confirmed = confirmed
                        keeper.due = confirmed + keeper.interval
                    else:
                        logger.warning("mailbox %s: lease %s", keeper.mailbox_id, state)
                    keeper.answered = max(keeper.answered, ticket)
                self.lock.notify_all()
