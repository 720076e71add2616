"""Settings of the running of waves (services/execution/): caps, retries, heartbeats and leases, task sizes, and
the engines' constructor options. Read from the environment like the rest; portal/settings.py takes them in."""

from django.core.exceptions import ImproperlyConfigured

from portal.env import env_float, env_int, env_rates, env_str

# --- execution (services/execution/) ----------------------------------------------------------------------
# Mailboxes syncing or cutting over at once, programme-wide; each endpoint also has its own max_concurrency.
MIGRATION_MAX_CONCURRENCY = env_int("MIGRATION_MAX_CONCURRENCY", 200)
# Retryable failures (network, throttled, busy) per phase before a mailbox is failed for a person to look at.
MIGRATION_RETRY_LIMIT = env_int("MIGRATION_RETRY_LIMIT", 5)
MIGRATION_RETRY_BASE_SECONDS = env_int("MIGRATION_RETRY_BASE_SECONDS", 30)
MIGRATION_RETRY_MAX_SECONDS = env_int("MIGRATION_RETRY_MAX_SECONDS", 3600)
# A mailbox whose heartbeat is older than this is taken to have lost its worker (or its task was lost with
# the broker) and is requeued. The heartbeat comes from the worker process's lease thread (LeaseHub) every
# MIGRATION_HEARTBEAT_SECONDS whatever the engine is doing, so three missed beats mean the run is gone; the
# reconciler looks every MIGRATION_RECONCILE_SECONDS: lost work is requeued within 60 + 15 s, well inside the
# two minutes the drills hold it to (tests/test_recovery_drills.py). A run that is alive but cut off is
# fenced: it stops before its next write once its lease is taken (docs/adr/024-recovery-in-minutes.md).
MIGRATION_HEARTBEAT_STALE_SECONDS = env_int("MIGRATION_HEARTBEAT_STALE_SECONDS", 60)
MIGRATION_HEARTBEAT_SECONDS = env_float("MIGRATION_HEARTBEAT_SECONDS", 20.0)
if MIGRATION_HEARTBEAT_STALE_SECONDS < 2 * MIGRATION_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "MIGRATION_HEARTBEAT_STALE_SECONDS must be at least twice MIGRATION_HEARTBEAT_SECONDS, or a live run "
        "that misses one beat is taken for dead"
    )
# A batch delivered more often than this without finishing (its workers died each time) fails its mailboxes
# with WORKER_LOST rather than kill another worker.
MIGRATION_MAX_DELIVERIES = env_int("MIGRATION_MAX_DELIVERIES", 3)
# Work is queued in tasks of about this many seconds of expected engine time (a slow mailbox gets a task of
# its own; mailboxes that take no time share one, up to MIGRATION_TASK_MAILBOXES).
MIGRATION_TASK_SECONDS = env_int("MIGRATION_TASK_SECONDS", 30)
MIGRATION_TASK_MAILBOXES = env_int("MIGRATION_TASK_MAILBOXES", 100)
# Progress (checkpoint, items, bytes, heartbeat) is saved after each folder or chunk, at most this often.
MIGRATION_PROGRESS_SECONDS = env_float("MIGRATION_PROGRESS_SECONDS", 1.0)
# Transitions of mailboxes that finish within this time are written together, one commit per group.
MIGRATION_JOURNAL_SECONDS = env_float("MIGRATION_JOURNAL_SECONDS", 0.25)
# How long before a wave's window its pre-stage copy starts.
MIGRATION_PRESTAGE_HOURS = env_int("MIGRATION_PRESTAGE_HOURS", 72)
# Constructor options per engine kind; SIMULATED_THROUGHPUT=0 makes the simulated engine instant.
MIGRATION_ENGINE_OPTIONS = {
    "simulated": {
        "throughput_bytes_per_s": env_int("SIMULATED_THROUGHPUT", 50_000_000),
        # how much a copy moves between two progress reports (a real engine reports per batch or folder)
        "chunk_bytes": env_int("SIMULATED_CHUNK_BYTES", 256 * 1024 * 1024),
        # e.g. THROTTLED=0.03,AUTH_FAILED=0.01: the share of copies failing with each code (the demo's mix)
        "failure_rates": env_rates("SIMULATED_FAILURE_RATES"),
        # drills: a file that records every copy's start and end, to check no mailbox ran twice at once
        "run_log": env_str("SIMULATED_RUN_LOG") or None,
        # drills: the worker process dies (os._exit) half way through copying this address, every time
        "die_on": env_str("SIMULATED_DIE_ON") or None,
        # e.g. NOT_LICENSED=0.02,TARGET_MISSING=0.01: the share of mailboxes pre-flight blocks with each code
        "preflight_rates": env_rates("SIMULATED_PREFLIGHT_RATES"),
    },
}
