"""Helpers for the execution tests: a wave already approved, its mailboxes stamped `scheduled`."""

import datetime as dt

from django.utils import timezone

from migrations_app.models import Event, Mailbox, Organisation, Wave
from tests.wave_fixtures import ready_mailboxes, wave_with


def approved_wave(
    organisation: Organisation,
    count: int,
    *,
    starts_in: dt.timedelta = dt.timedelta(hours=-1),
    length: dt.timedelta = dt.timedelta(hours=6),
    now: dt.datetime | None = None,
    name: str = "Evening",
    **fields,
) -> tuple[Wave, list[Mailbox]]:
    """A wave approved and stamped, with explicit times relative to `now` (no sleeping in tests)."""
    now = now or timezone.now()
    mailboxes = ready_mailboxes(organisation, count)
    wave = wave_with(organisation, name=name, status=Wave.Status.APPROVED, **fields)
    Wave.objects.filter(pk=wave.pk).update(starts_at=now + starts_in, ends_at=now + starts_in + length)
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(
        wave=wave, state=Mailbox.State.SCHEDULED, item_count=100
    )
    wave.refresh_from_db()
    return wave, list(Mailbox.objects.filter(wave=wave).order_by("id"))


# A cutover's recorded steps inside the cutover state, before the catch-up delta: final delta, switch requested,
# switched (then cutover -> verifying is the catch-up delta).
CUTOVER_STEPS = [(Mailbox.State.CUTOVER, Mailbox.State.CUTOVER)] * 3


def transitions(mailbox: Mailbox) -> list[tuple[str, str]]:
    return list(
        Event.objects.filter(mailbox_id=mailbox.pk).order_by("id").values_list("from_state", "to_state")
    )
