"""Helpers for the wave and planner tests: ready mailboxes in bulk and a wave holding given organisations."""

import datetime as dt

from migrations_app.models import Allocation, Mailbox, Organisation, Wave
from migrations_app.planning.calendar import LONDON
from migrations_app.services.waves import wave_refresh_totals

_counter = iter(range(1, 10_000_000))


def ready_mailboxes(
    organisation: Organisation, count: int, *, size: int = 1_000_000, group: str = "", **extra
):
    """Mailboxes straight in the `ready` state (tests and the bench set states directly)."""
    rows = []
    for _ in range(count):
        n = next(_counter)
        rows.append(
            Mailbox(
                organisation=organisation,
                email=f"m{n}.{organisation.ods_code.lower()}@example.nhs.uk",
                display_name=f"Mailbox {n}",
                size_bytes=size,
                affinity_group=group,
                state=extra.get("state", Mailbox.State.READY),
                kind=extra.get("kind", Mailbox.Kind.USER),
                wave=extra.get("wave"),  # required by the database for the in-wave states (scheduled ...)
            )
        )
    return Mailbox.objects.bulk_create(rows)


def wave_with(
    *organisations: Organisation,
    status=Wave.Status.DRAFT,
    capacity=22_000,
    day=dt.date(2026, 6, 1),
    name="Evening Mon 1 Jun 2026",
    **fields,
) -> Wave:
    """A wave whose allocations hold each organisation whole."""
    starts = dt.datetime.combine(day, dt.time(18), tzinfo=LONDON)
    wave = Wave.objects.create(
        name=name,
        kind=Wave.Kind.EVENING,
        starts_at=starts,
        ends_at=starts + dt.timedelta(hours=12),
        capacity_mailboxes=capacity,
        capacity_bytes=10**15,
        status=status,
        **fields,
    )
    Allocation.objects.bulk_create(
        [Allocation(wave=wave, organisation=o, kind=Allocation.Kind.ORGANISATION) for o in organisations]
    )
    wave_refresh_totals(wave=wave)
    return wave
