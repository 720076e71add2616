"""Placement: first fit of units into windows, in planning order, with the reason for anything left over.
Plain Python."""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from migrations_app.planning.calendar import EVENING, WEEKEND, Window, overlaps
from migrations_app.planning.units import Piece, Unit

# Reasons a unit could not be placed: stable codes for the API, sentences for people.
TOO_LARGE = "too_large"
CONFLICTING_PREFERENCES = "conflicting_preferences"
BLACKOUT_COVERS_HORIZON = "blackout_covers_horizon"
NO_WINDOW_OF_KIND = "no_window_of_preferred_kind"
NO_CAPACITY = "no_capacity_in_horizon"
REASONS = {
    TOO_LARGE: "Larger than any window it may use (mailboxes or bytes): split the affinity group or raise the cap",
    CONFLICTING_PREFERENCES: "Organisations linked by an affinity group prefer different window kinds",
    BLACKOUT_COVERS_HORIZON: "Blackout dates cover every window it may use in the planning horizon",
    NO_WINDOW_OF_KIND: "No window of the preferred kind in the planning horizon",
    NO_CAPACITY: "No window with enough room left in the planning horizon",
}


@dataclass
class PlannedWave:
    window: Window
    pieces: list[Piece] = field(default_factory=list)
    mailboxes: int = 0
    bytes: int = 0
    capacity_mailboxes: int = 0
    capacity_bytes: int = 0

    @property
    def organisations(self) -> int:
        return len({p.organisation_id for p in self.pieces})


@dataclass(frozen=True)
class Unplaced:
    pieces: tuple[Piece, ...]
    reason: str
    mailboxes: int
    bytes: int

    @property
    def message(self) -> str:
        return REASONS[self.reason]


@dataclass
class Plan:
    start: dt.date
    end: dt.date
    waves: list[PlannedWave]
    unplaced: list[Unplaced]
    # Organisations left out before planning (gates missing, not checked, blocked): filled in by
    # services.plans from selectors.readiness; not part of the fingerprint.
    left_out: list = field(default_factory=list)

    @property
    def mailboxes(self) -> int:
        return sum(w.mailboxes for w in self.waves)

    @property
    def bytes(self) -> int:
        return sum(w.bytes for w in self.waves)

    @property
    def unplaced_mailboxes(self) -> int:
        return sum(u.mailboxes for u in self.unplaced)

    @property
    def finish(self) -> dt.datetime | None:
        return max((w.window.ends_at for w in self.waves), default=None)

    @property
    def fingerprint(self) -> str:
        """Same input, same plan, same fingerprint: commit refuses a plan that changed since its preview."""
        digest = hashlib.sha256()
        for wave in self.waves:
            digest.update(
                json.dumps(
                    [wave.window.key, [list(p.__dict__.values()) for p in wave.pieces]], default=str
                ).encode()
            )
        for item in self.unplaced:
            digest.update(
                json.dumps([item.reason, [list(p.__dict__.values()) for p in item.pieces]]).encode()
            )
        return digest.hexdigest()[:16]


def plan_units(
    windows: Sequence[Window],
    units: Sequence[Unit],
    *,
    used: dict[tuple[str, str], tuple[int, int]] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> Plan:
    """First fit in planning order. Each unit takes the earliest window of a kind it may use, clear of its
    blackouts, with room for all of it; a large organisation's units never go back to an earlier window than
    its previous unit's, so it moves over consecutive waves. `used` is capacity already taken in a window
    by waves kept from earlier plans."""
    used = used or {}
    left_m = [w.capacity_mailboxes - used.get(w.key, (0, 0))[0] for w in windows]
    left_b = [w.capacity_bytes - used.get(w.key, (0, 0))[1] for w in windows]
    by_kind: dict[str, list[int]] = {EVENING: [], WEEKEND: []}
    for i, w in enumerate(windows):
        by_kind.setdefault(w.kind, []).append(i)
    first_open = dict.fromkeys(by_kind, 0)  # per kind: index into by_kind before which nothing fits any more
    biggest = {
        k: (
            max((windows[i].capacity_mailboxes for i in ix), default=0),
            max((windows[i].capacity_bytes for i in ix), default=0),
        )
        for k, ix in by_kind.items()
    }
    # The smallest unit still to come: a window with less room than that is closed for good.
    n = len(units)
    min_m, min_b = [0] * (n + 1), [0] * (n + 1)
    min_m[n] = min_b[n] = 1 << 62
    for i in range(n - 1, -1, -1):
        min_m[i] = min(min_m[i + 1], units[i].mailboxes)
        min_b[i] = min(min_b[i + 1], units[i].bytes)
    first_days = [w.first_day for w in windows]
    last_days = [w.last_day for w in windows]

    planned: dict[int, PlannedWave] = {}
    unplaced: list[Unplaced] = []
    last_window_of: dict[int, int] = {}
    for u_index, unit in enumerate(units):
        kinds = sorted(unit.kinds)
        reason = None
        if not kinds:
            reason = CONFLICTING_PREFERENCES
        elif not any(
            unit.mailboxes <= biggest.get(k, (0, 0))[0] and unit.bytes <= biggest.get(k, (0, 0))[1]
            for k in kinds
        ):
            reason = TOO_LARGE if any(by_kind.get(k) for k in kinds) else NO_WINDOW_OF_KIND
        if reason:
            unplaced.append(Unplaced(unit.pieces, reason, unit.mailboxes, unit.bytes))
            continue
        floor = last_window_of.get(unit.lead, 0)
        need_m, need_b, blackouts = unit.mailboxes, unit.bytes, unit.blackouts
        best = None
        for kind in kinds:
            ix = by_kind.get(kind, [])
            # close windows that nothing still to come can fit into
            p = first_open[kind]
            while p < len(ix) and (left_m[ix[p]] < min_m[u_index] or left_b[ix[p]] < min_b[u_index]):
                p += 1
            first_open[kind] = p
            if floor:
                p = max(p, bisect.bisect_left(ix, floor))
            # the hot loop: plain list lookups only (about a million steps for the national programme)
            for i in ix[p:]:
                if best is not None and i > best:
                    break
                if (
                    left_m[i] >= need_m
                    and left_b[i] >= need_b
                    and (not blackouts or not overlaps(first_days[i], last_days[i], blackouts))
                ):
                    best = i
                    break
        if best is None:
            usable = [i for k in kinds for i in by_kind.get(k, [])]
            if usable and all(overlaps(first_days[i], last_days[i], blackouts) for i in usable):
                reason = BLACKOUT_COVERS_HORIZON
            else:
                reason = NO_CAPACITY if usable else NO_WINDOW_OF_KIND
            unplaced.append(Unplaced(unit.pieces, reason, unit.mailboxes, unit.bytes))
            continue
        wave = planned.get(best)
        if wave is None:
            wave = planned[best] = PlannedWave(
                windows[best], capacity_mailboxes=left_m[best], capacity_bytes=left_b[best]
            )
        wave.pieces.extend(unit.pieces)
        wave.mailboxes += unit.mailboxes
        wave.bytes += unit.bytes
        left_m[best] -= unit.mailboxes
        left_b[best] -= unit.bytes
        last_window_of[unit.lead] = best
    waves = [planned[i] for i in sorted(planned)]
    return Plan(
        start or (windows[0].first_day if windows else dt.date.today()),
        end or (windows[-1].first_day if windows else dt.date.today()),
        waves,
        unplaced,
    )
