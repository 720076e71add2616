"""Poison pills: a mailbox whose copy kills its worker every time (a message that runs it out of memory, say)
would be run again and again (the broker's redelivery, then the reconciler's requeue once its heartbeat goes
stale), killing one worker after another. Every run of a mailbox is counted in the cache (Redis in
production, shared by every worker) when it starts, and forgotten when it ends in any way the runner records;
a run that finds MIGRATION_MAX_DELIVERIES earlier runs that never ended fails the mailbox with WORKER_LOST
and a message naming the last item the engine said it was copying, instead of dying in its turn."""

from __future__ import annotations

from django.core.cache import cache

from migrations_app.models import Mailbox
from migrations_app.services.execution.states import M

WORKER_LOST = "WORKER_LOST"
_DAY = 24 * 3600


def _key(mailbox_id: int) -> str:
    return f"migrations:unfinished-runs:{mailbox_id}"


def run_started(mailbox_id: int) -> int:
    """This run's number among the mailbox's runs that have not ended (1: none died before it)."""
    cache.add(_key(mailbox_id), 0, timeout=_DAY)
    return cache.incr(_key(mailbox_id))


def run_ended(mailbox_id: int) -> None:
    cache.delete(_key(mailbox_id))


def last_item(checkpoint: dict | None) -> str:
    """The item(s) the engine was copying when it last saved its checkpoint, in words."""
    flying = (checkpoint or {}).get("in_flight") or []
    if not flying:
        return "the engine had not said which item it was copying"
    item = max(flying, key=lambda i: i.get("size") or 0)
    subject = f' "{item["subject"]}"' if item.get("subject") else ""
    size = (item.get("size") or 0) / 1_000_000
    return f"last item tried: {item.get('folder')} item {item.get('id')}{subject} ({size:.1f} MB)"


def worker_lost(journal, mailbox: Mailbox, state: str, runs: int) -> None:
    """Fail the mailbox (conditional on this run's lease, through its journal) instead of running it."""
    message = f"the worker died {runs} times copying this mailbox; {last_item(mailbox.checkpoint)}"
    journal.move(
        mailbox,
        state,
        M.FAILED,
        action="mailbox.failed",
        message=f"{WORKER_LOST}: {message}",
        data={"code": WORKER_LOST, "runs": runs},
        attempts=mailbox.attempts + 1,
        lease="",
        retry_at=None,
        last_error_code=WORKER_LOST,
        last_error_message=message,
        needed_attention=True,
    )
