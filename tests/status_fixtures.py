"""Helpers for the status-page tests: mailboxes of an organisation spread over a wave in given states."""

import datetime as dt

from django.utils import timezone

from migrations_app.models import Mailbox, Wave
from tests.wave_fixtures import ready_mailboxes, wave_with


def wave_in_states(
    organisations,
    states: dict,
    *,
    status=Wave.Status.RUNNING,
    name="Evening",
    hours_ago=1,
    size=1024**3,
    **fields,
):
    """A stamped wave holding, for each organisation, mailboxes in the given {state: count}; failed ones get
    the error code AUTH_FAILED unless a (state, code) key says otherwise."""
    wave = wave_with(*organisations, name=name, status=status, **fields)
    now = timezone.now()
    Wave.objects.filter(pk=wave.pk).update(
        starts_at=now - dt.timedelta(hours=hours_ago),
        ends_at=now - dt.timedelta(hours=hours_ago) + dt.timedelta(hours=12),
    )
    wave.refresh_from_db()
    for organisation in organisations:
        for key, count in states.items():
            state, code = key if isinstance(key, tuple) else (key, "AUTH_FAILED" if key == "failed" else "")
            made = ready_mailboxes(organisation, count, size=size)
            Mailbox.objects.filter(pk__in=[m.pk for m in made]).update(
                wave=wave, state=state, last_error_code=code, needed_attention=bool(code)
            )
    return wave
