"""Failure triage's one write: retry every failed mailbox with an error code, across the whole programme or
one wave, once its cause is fixed. Used by the failures page, the API and the wave's own "retry these".

Set-based: one SELECT ... FOR UPDATE of the mailboxes, one UPDATE per 5,000 of them, and one INSERT of their
events, whatever the number of waves and mailboxes (it was one conditional UPDATE, one read and one event
INSERT per mailbox, inside the web request). The waves are pumped as soon as it commits, and a wave that had
completed with these failures runs again (execution/completion.py)."""

from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from migrations_app.models import Mailbox, User, Wave
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record_many
from migrations_app.services.execution.clock import wave_pump_later
from migrations_app.services.execution.completion import waves_after_retry, waves_lock_for_retry

M = Mailbox.State
CHUNK = 5_000
# What a retry clears (the same as one mailbox's retry, services.execution.actions._CLEARED).
CLEARED = {"attempts": 0, "retry_at": None, "last_error_code": "", "last_error_message": "", "lease": ""}


@transaction.atomic
def failures_retry(*, actor: User, code: str, reason: str = "", wave: Wave | None = None) -> int:
    """Failed mailboxes with this code go back to scheduled (in a wave; their checkpoint kept, so the copy
    resumes) or ready (in none). Programme office only. Returns how many; one event on each one's timeline.
    Rows a worker holds locked at this moment are moving already and are left to it (SKIP LOCKED)."""
    require_programme_office(actor)
    failed = Mailbox.objects.filter(state=M.FAILED, last_error_code=code)
    if wave is not None:
        failed = failed.filter(wave=wave)
    rows = list(
        failed.select_for_update(skip_locked=True)
        .order_by("id")
        .values_list("id", "organisation_id", "wave_id", "email")
    )
    now = timezone.now()
    waves = waves_lock_for_retry(r[2] for r in rows)
    for start in range(0, len(rows), CHUNK):
        Mailbox.objects.filter(pk__in=[r[0] for r in rows[start : start + CHUNK]], state=M.FAILED).update(
            state=Case(When(wave__isnull=True, then=Value(M.READY)), default=Value(M.SCHEDULED)),
            updated_at=now,
            **CLEARED,
        )
    message = reason or f"retry all {code or 'failures with no code'}"
    event_record_many(
        dict(
            action="mailbox.retried",
            actor_id=actor.pk,
            organisation_id=organisation_id,
            mailbox_id=pk,
            wave_id=wave_id,
            subject=email,
            from_state=M.FAILED,
            to_state=M.SCHEDULED if wave_id else M.READY,
            message=message,
            data={"code": code},
        )
        for pk, organisation_id, wave_id, email in rows
    )
    # queued now, not at the beat's next tick: the page shows them scheduled and then moving within seconds
    for wave_id in waves_after_retry(waves=waves, retried=rows, actor=actor, now=now):
        transaction.on_commit(lambda wave_id=wave_id: wave_pump_later(wave_id))
    return len(rows)
