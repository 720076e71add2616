"""Running the waves: claim mailboxes, run the engine, record every transition.

    scheduled --claim--> syncing --engine.sync--> synced --claim (window open)--> cutover
        --final delta--> cutover (switch: mail routed to Exchange Online; or switching, until confirmed)
        --catch-up delta--> verifying --engine.verify--> migrated
    retryable error: back to scheduled / synced with attempts+1 and retry_at (back-off with jitter)
    permanent error, or over MIGRATION_RETRY_LIMIT: failed, with a stable code and message

Who owns a mailbox: `mailbox_claim` moves a batch into syncing / cutover inside one transaction that holds
row locks on the endpoints and the programme settings row, so the concurrency caps are counted in the
database and hold across every worker process and machine. The worker that runs a claimed mailbox then takes
a lease (a conditional UPDATE on an empty or stale lease) and every write it makes afterwards is conditional
on that lease: a task redelivered by the broker while the first run is alive finds the lease taken and does
nothing, and a run that lost its lease (the reconciler gave it away) stops at its next progress report.

The package, one concern per module:
    states   the states, phases, stable codes and exceptions they share
    specs    which engine copies a wave, and the spec it is given
    claims   claiming within the caps and queueing batches to the workers
    runner   a run: lease, journal, progress (checkpoint and heartbeat), retries
    clock    the wave clock: tick, pump, carry-over, completion, reconcile
    actions  a person's actions on a mailbox (retry, roll back, cancel, pause, resume)
    switch   the cutover's switch step (mail routed to Exchange Online) and the late-confirmation timeout
    switch_actions  confirming a switch, switching back (a roll back of a switched mailbox does it first)
Every name is re-exported here, so `from migrations_app.services.execution import X` keeps working.
"""

from migrations_app.services.execution.actions import (
    mailbox_cancel,
    mailbox_pause,
    mailbox_resume,
    mailbox_retry,
    mailbox_rollback,
    wave_retry_failures,
)
from migrations_app.services.execution.claims import _queue, mailbox_claim, task_batches
from migrations_app.services.execution.clock import (
    reconcile_stale,
    wave_carry_over,
    wave_complete_if_done,
    wave_pump,
    wave_pump_later,
    wave_tick,
)
from migrations_app.services.execution.runner import (
    Journal,
    mailbox_run,
    mailbox_run_cutover,
    mailbox_run_sync,
    mailboxes_run,
    retry_delay,
)
from migrations_app.services.execution.specs import mailbox_spec, wave_engine
from migrations_app.services.execution.states import (
    ACTIVE_STATES,
    CANCELLABLE,
    CUTOVER,
    PAUSABLE,
    PHASES,
    RETRY_LIMIT,
    RETRYABLE,
    ROLLBACKABLE,
    SYNC,
    VERIFY_MISMATCH,
    LeaseLost,
    MailboxConflict,
    PauseRequested,
)
from migrations_app.services.execution.switch import MANUAL_CHECKLIST, cutover_switch, switch_timeouts
from migrations_app.services.execution.switch_actions import (
    mailbox_switch_confirm,
    mailbox_unswitch,
    mailbox_unswitch_run,
)

__all__ = [
    "ACTIVE_STATES",
    "CANCELLABLE",
    "CUTOVER",
    "PAUSABLE",
    "PHASES",
    "RETRYABLE",
    "RETRY_LIMIT",
    "ROLLBACKABLE",
    "SYNC",
    "VERIFY_MISMATCH",
    "Journal",
    "LeaseLost",
    "MailboxConflict",
    "PauseRequested",
    "_queue",
    "mailbox_cancel",
    "mailbox_claim",
    "mailbox_pause",
    "mailbox_resume",
    "mailbox_retry",
    "mailbox_rollback",
    "mailbox_run",
    "mailbox_run_cutover",
    "mailbox_run_sync",
    "mailbox_spec",
    "mailbox_switch_confirm",
    "mailbox_unswitch",
    "mailbox_unswitch_run",
    "cutover_switch",
    "switch_timeouts",
    "MANUAL_CHECKLIST",
    "mailboxes_run",
    "reconcile_stale",
    "retry_delay",
    "task_batches",
    "wave_carry_over",
    "wave_complete_if_done",
    "wave_engine",
    "wave_pump",
    "wave_pump_later",
    "wave_retry_failures",
    "wave_tick",
]
