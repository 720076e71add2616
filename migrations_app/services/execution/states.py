"""The states a mailbox moves through while it is copied, the phases, the stable codes, and the exceptions
the execution modules share (claims, runner, clock, actions)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from migrations_app.models import Mailbox, Wave

M = Mailbox.State
W = Wave.Status

SYNC = "sync"
CUTOVER = "cutover"
PHASES = (SYNC, CUTOVER)
# phase -> (claimed from, running in)
_CLAIM = {SYNC: (M.SCHEDULED, M.SYNCING), CUTOVER: (M.SYNCED, M.CUTOVER)}
ACTIVE_STATES = (M.SYNCING, M.CUTOVER, M.VERIFYING)
# What people may do in which state (the pages offer the buttons from the same tuples).
RETRYABLE = (M.FAILED,)
CANCELLABLE = (M.SCHEDULED, M.SYNCED, M.FAILED)
ROLLBACKABLE = (*CANCELLABLE, M.MIGRATED)
PAUSABLE = (M.SCHEDULED, *ACTIVE_STATES, M.SYNCED)
# Stable codes of our own, beside the engines' (engines.base).
VERIFY_MISMATCH = "VERIFY_MISMATCH"
RETRY_LIMIT = "RETRY_LIMIT"


class MailboxConflict(ValidationError):
    """The mailbox was not in the state the action needs: usually a worker or a person acted first."""


class LeaseLost(Exception):
    """This run no longer owns the mailbox (the reconciler handed it to another run): stop quietly."""


class PauseRequested(Exception):
    """A person paused the mailbox while it was being copied: stop, keep the checkpoint, hand it back."""
