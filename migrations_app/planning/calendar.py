"""Migration windows: the evenings and weekends the programme settings open, less closed dates. Plain Python."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from migrations_app.models import ProgrammeSettings

LONDON = ZoneInfo("Europe/London")
# Wave.Kind values (kept as plain strings: no Django here)
EVENING, WEEKEND = "evening", "weekend"


def allowed_kinds(preference: str) -> frozenset[str]:
    """The window kinds an organisation's preference (Organisation.WindowPreference) allows."""
    if preference == EVENING:
        return frozenset({EVENING})
    if preference == WEEKEND:
        return frozenset({WEEKEND})
    return frozenset({EVENING, WEEKEND})


@dataclass(frozen=True)
class WindowRules:
    evening_days: frozenset[int]
    evening_starts: dt.time
    evening_ends: dt.time
    evening_capacity_mailboxes: int
    evening_capacity_bytes: int
    weekend_start_day: int
    weekend_starts: dt.time
    weekend_end_day: int
    weekend_ends: dt.time
    weekend_capacity_mailboxes: int
    weekend_capacity_bytes: int
    single_wave_organisation_max: int = 5_000
    large_organisation_chunk: int = 2_000

    @classmethod
    def from_settings(cls, settings: ProgrammeSettings) -> WindowRules:
        return cls(
            evening_days=frozenset(int(d) for d in settings.evening_days),
            evening_starts=settings.evening_starts,
            evening_ends=settings.evening_ends,
            evening_capacity_mailboxes=settings.evening_capacity_mailboxes,
            evening_capacity_bytes=settings.evening_capacity_bytes,
            weekend_start_day=settings.weekend_start_day,
            weekend_starts=settings.weekend_starts,
            weekend_end_day=settings.weekend_end_day,
            weekend_ends=settings.weekend_ends,
            weekend_capacity_mailboxes=settings.weekend_capacity_mailboxes,
            weekend_capacity_bytes=settings.weekend_capacity_bytes,
            single_wave_organisation_max=settings.single_wave_organisation_max,
            large_organisation_chunk=max(1, settings.large_organisation_chunk),
        )

    def capacity(self, kind: str) -> tuple[int, int]:
        if kind == EVENING:
            return self.evening_capacity_mailboxes, self.evening_capacity_bytes
        return self.weekend_capacity_mailboxes, self.weekend_capacity_bytes


@dataclass(frozen=True)
class Window:
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    capacity_mailboxes: int
    capacity_bytes: int

    @property
    def first_day(self) -> dt.date:
        return self.starts_at.astimezone(LONDON).date()

    @property
    def last_day(self) -> dt.date:
        return self.ends_at.astimezone(LONDON).date()

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.starts_at.astimezone(dt.UTC).isoformat()


def london(day: dt.date, time: dt.time) -> dt.datetime:
    """The instant (in UTC) of a wall-clock time on a date in London. A time that does not exist (inside the
    spring-forward hour) comes out an hour later, as a clock would show it."""
    naive = dt.datetime.combine(day, time)
    # Kept in UTC: Python subtracts two datetimes of the same tzinfo by wall clock, which would make a
    # window across a clock change an hour too long or short.
    return naive.replace(tzinfo=LONDON).astimezone(dt.UTC)


def overlaps(first: dt.date, last: dt.date, periods: Iterable[tuple[dt.date, dt.date]]) -> bool:
    return any(start <= last and end >= first for start, end in periods)


def windows_between(
    rules: WindowRules, start: dt.date, end: dt.date, closed: Sequence[tuple[dt.date, dt.date]] = ()
) -> list[Window]:
    """Every window that starts on a date from start to end (inclusive) and touches no closed date, in order."""
    windows: list[Window] = []
    day = start
    while day <= end:
        weekday = day.weekday()
        if weekday in rules.evening_days:
            ends_day = day + dt.timedelta(days=1 if rules.evening_ends <= rules.evening_starts else 0)
            windows.append(
                Window(
                    EVENING,
                    london(day, rules.evening_starts),
                    london(ends_day, rules.evening_ends),
                    *rules.capacity(EVENING),
                )
            )
        if weekday == rules.weekend_start_day:
            span = (rules.weekend_end_day - rules.weekend_start_day) % 7
            if span == 0 and rules.weekend_ends <= rules.weekend_starts:
                span = 7
            windows.append(
                Window(
                    WEEKEND,
                    london(day, rules.weekend_starts),
                    london(day + dt.timedelta(days=span), rules.weekend_ends),
                    *rules.capacity(WEEKEND),
                )
            )
        day += dt.timedelta(days=1)
    open_windows = [w for w in windows if not overlaps(w.first_day, w.last_day, closed)]
    return sorted(open_windows, key=lambda w: (w.starts_at, w.kind))
