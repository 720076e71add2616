"""The wave planner: windows from the programme settings, a deterministic plan from aggregates, preview and
commit, moves between draft waves, and pilot waves (docs/adr/007-planner-allocations.md).

The planner never reads or writes one row per mailbox. It reads one GROUP BY over (organisation, affinity
group) of the plannable mailboxes (ready and in no wave, served by the partial index mailbox_plannable_idx),
plus one ordered pass over the ungrouped mailboxes of the few large organisations to cut them into chunks
of id ranges. It saves allocations (organisation / affinity group / chunk -> wave). Mailbox rows get their
wave when the wave is approved (services.waves.wave_approve).

The core (`windows_between`, `build_units`, `plan_units`) works on plain data so that the property tests run
it thousands of times without a database.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.db.models import Window as SqlWindow
from django.db.models.functions import RowNumber
from django.utils import timezone

from migrations_app.models import (
    Allocation,
    BlackoutPeriod,
    ClosedPeriod,
    Decision,
    Mailbox,
    Organisation,
    ProgrammeSettings,
    User,
    Wave,
)
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.selectors.waves import (
    ALLOCATING_STATUSES,
    allocation_matches,
    organisation_allowed_kinds,
    wave_totals,
)
from migrations_app.services.events import event_record

LONDON = ZoneInfo("Europe/London")
EVENING, WEEKEND = Wave.Kind.EVENING.value, Wave.Kind.WEEKEND.value

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


# --- windows -----------------------------------------------------------------------------------------------


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


def _overlaps(first: dt.date, last: dt.date, periods: Iterable[tuple[dt.date, dt.date]]) -> bool:
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
    open_windows = [w for w in windows if not _overlaps(w.first_day, w.last_day, closed)]
    return sorted(open_windows, key=lambda w: (w.starts_at, w.kind))


# --- units: what must move together --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgInfo:
    id: int
    code: str
    priority: int = 100
    preference: str = Organisation.WindowPreference.ANY.value
    blackouts: tuple[tuple[dt.date, dt.date], ...] = ()


@dataclass(frozen=True)
class GroupRow:
    """Plannable mailboxes of one organisation with one affinity group ('' = no group)."""

    organisation_id: int
    affinity_group: str
    mailboxes: int
    bytes: int


@dataclass(frozen=True)
class ChunkRow:
    """A chunk of a large organisation's ungrouped plannable mailboxes: ids first_id..last_id."""

    organisation_id: int
    first_id: int
    last_id: int
    mailboxes: int
    bytes: int


@dataclass(frozen=True)
class Piece:
    """One allocation to be: a whole organisation, one affinity group of it, or a chunk."""

    organisation_id: int
    kind: str
    affinity_group: str = ""
    first_id: int | None = None
    last_id: int | None = None
    mailboxes: int = 0
    bytes: int = 0


@dataclass
class Unit:
    pieces: tuple[Piece, ...]
    organisations: tuple[int, ...]
    lead: int  # the organisation whose priority and order place it
    sort_key: tuple
    mailboxes: int
    bytes: int
    kinds: frozenset[str]
    blackouts: tuple[tuple[dt.date, dt.date], ...]


def large_organisations(rules: WindowRules, orgs: dict[int, OrgInfo], rows: Iterable[GroupRow]) -> set[int]:
    """Organisations spread over several waves: above the single-wave size, or too big for any window they
    may use."""
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        totals[row.organisation_id][0] += row.mailboxes
        totals[row.organisation_id][1] += row.bytes
    large = set()
    for org_id, (count, size) in totals.items():
        info = orgs.get(org_id)
        kinds = organisation_allowed_kinds(info.preference if info else "any")
        fits = any(count <= rules.capacity(k)[0] and size <= rules.capacity(k)[1] for k in kinds)
        if count > rules.single_wave_organisation_max or not fits:
            large.add(org_id)
    return large


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, item):
        self.parent.setdefault(item, item)
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # deterministic: the smaller key becomes the root
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def build_units(
    orgs: dict[int, OrgInfo],
    rows: Iterable[GroupRow],
    chunks: Iterable[ChunkRow],
    large: set[int],
) -> list[Unit]:
    """Pieces joined into the units that must share a wave, in planning order.

    A small organisation is one piece (all of it, groups included). A large organisation gives one piece
    per affinity group and one per chunk of its ungrouped mailboxes. An affinity group that spans
    organisations joins everything it touches into one unit (affinity group names are programme-wide)."""
    uf = _UnionFind()
    pieces_of: dict[tuple, list[Piece]] = defaultdict(list)
    small_totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    group_seen: set[str] = set()
    for row in sorted(rows, key=lambda r: (r.organisation_id, r.affinity_group)):
        if row.organisation_id in large:
            if row.affinity_group:  # ungrouped mailboxes of large organisations come as chunks
                key = ("g", row.affinity_group)
                uf.find(key)
                pieces_of[key].append(
                    Piece(
                        row.organisation_id,
                        Allocation.Kind.GROUP.value,
                        row.affinity_group,
                        None,
                        None,
                        row.mailboxes,
                        row.bytes,
                    )
                )
                group_seen.add(row.affinity_group)
        else:
            key = ("o", row.organisation_id)
            uf.find(key)
            small_totals[row.organisation_id][0] += row.mailboxes
            small_totals[row.organisation_id][1] += row.bytes
            if row.affinity_group:
                uf.union(key, ("g", row.affinity_group))
    for org_id, (count, size) in small_totals.items():
        pieces_of[("o", org_id)].append(
            Piece(org_id, Allocation.Kind.ORGANISATION.value, "", None, None, count, size)
        )
    for chunk in sorted(chunks, key=lambda c: (c.organisation_id, c.first_id)):
        key = ("c", chunk.organisation_id, chunk.first_id)
        uf.find(key)
        pieces_of[key].append(
            Piece(
                chunk.organisation_id,
                Allocation.Kind.CHUNK.value,
                "",
                chunk.first_id,
                chunk.last_id,
                chunk.mailboxes,
                chunk.bytes,
            )
        )

    components: dict[tuple, list[Piece]] = defaultdict(list)
    for key in sorted(pieces_of):
        components[uf.find(key)].extend(pieces_of[key])

    units: list[Unit] = []
    for pieces in components.values():
        if not pieces:
            continue
        pieces.sort(key=lambda p: (p.organisation_id, p.kind, p.affinity_group, p.first_id or 0))
        org_ids = tuple(sorted({p.organisation_id for p in pieces}))
        infos = [orgs.get(o) or OrgInfo(o, str(o)) for o in org_ids]
        lead = min(infos, key=lambda i: (i.priority, i.code, i.id))
        kinds = frozenset.intersection(*(organisation_allowed_kinds(i.preference) for i in infos))
        blackouts = tuple(sorted({b for i in infos for b in i.blackouts}))
        mailboxes = sum(p.mailboxes for p in pieces)
        size = sum(p.bytes for p in pieces)
        first = pieces[0]
        if lead.id in large:
            # A large organisation's groups go first, largest first (they are the hard ones to fit); then
            # its chunks in id order.
            lead_pieces = [p for p in pieces if p.organisation_id == lead.id]
            is_chunk = all(p.kind == Allocation.Kind.CHUNK for p in lead_pieces)
            order = (
                (1, min(p.first_id or 0 for p in lead_pieces), "")
                if is_chunk
                else (0, -mailboxes, first.affinity_group)
            )
        else:
            order = (0, 0, "")
        sort_key = (lead.priority, lead.code, lead.id, order, first.organisation_id, first.affinity_group)
        units.append(Unit(tuple(pieces), org_ids, lead.id, sort_key, mailboxes, size, kinds, blackouts))
    units.sort(key=lambda u: u.sort_key)
    return units


# --- the placement -----------------------------------------------------------------------------------------


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
                    and (not blackouts or not _overlaps(first_days[i], last_days[i], blackouts))
                ):
                    best = i
                    break
        if best is None:
            usable = [i for k in kinds for i in by_kind.get(k, [])]
            if usable and all(_overlaps(first_days[i], last_days[i], blackouts) for i in usable):
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


# --- reading the database: aggregates, never rows ----------------------------------------------------------


def _plannable(exclude_waves: Sequence[int] = ()) -> tuple:
    """Ready mailboxes in no wave and not covered by an allocation of a draft or proposed wave we keep."""
    qs = Mailbox.objects.filter(state=Mailbox.State.READY, wave__isnull=True)
    live = Allocation.objects.filter(wave__status__in=ALLOCATING_STATUSES).exclude(wave_id__in=exclude_waves)
    if live.exists():  # the common full-programme case has none: keep that query a plain index scan
        qs = qs.exclude(
            Q(organisation_id__in=live.values("organisation_id"))
            & Exists(allocation_matches(live.filter(organisation_id=OuterRef("organisation_id"))))
        )
    return qs


def _group_rows(qs) -> list[GroupRow]:
    # One GROUP BY over the partial index mailbox_plannable_idx (organisation, affinity_group, id).
    rows = (
        qs.order_by()
        .values_list("organisation_id", "affinity_group")
        .annotate(n=Count("id"), b=Sum("size_bytes"))
    )
    return [GroupRow(o, g, n, b or 0) for o, g, n, b in rows]


def _chunk_rows(qs, large: set[int], chunk: int) -> list[ChunkRow]:
    """The ungrouped mailboxes of large organisations cut into id ranges of `chunk` mailboxes: an ordered
    pass over the same index for those organisations only."""
    if not large:
        return []
    inner = (
        qs.filter(organisation_id__in=sorted(large), affinity_group="")
        .order_by()
        .annotate(rn=SqlWindow(RowNumber(), partition_by=[F("organisation_id")], order_by=F("id").asc()))
        .values("organisation_id", "id", "size_bytes", "rn")
    )
    sql, params = inner.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.organisation_id, MIN(s.id), MAX(s.id), COUNT(*), SUM(s.size_bytes) "
            f"FROM ({sql}) s GROUP BY s.organisation_id, (s.rn - 1) / %s",
            (*params, chunk),
        )
        return [ChunkRow(o, lo, hi, n, int(b or 0)) for o, lo, hi, n, b in cursor.fetchall()]


def _org_infos(org_ids: Iterable[int], start: dt.date, end: dt.date) -> dict[int, OrgInfo]:
    ids = sorted(set(org_ids))
    blackouts: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
    # one query for the blackouts touching the horizon
    for org_id, s, e in BlackoutPeriod.objects.filter(ends_on__gte=start, starts_on__lte=end).values_list(
        "organisation_id", "starts_on", "ends_on"
    ):
        blackouts[org_id].append((s, e))
    orgs = Organisation.objects.values_list("id", "ods_code", "priority", "preferred_window")
    if len(ids) < 10_000:  # beyond that, reading every organisation is cheaper than a long IN list
        orgs = orgs.filter(pk__in=ids)
    infos = {}
    for org_id, code, priority, preference in orgs.iterator(chunk_size=5000):
        infos[org_id] = OrgInfo(org_id, code, priority, preference, tuple(sorted(blackouts.get(org_id, ()))))
    return infos


def closed_periods(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    return list(
        ClosedPeriod.objects.filter(ends_on__gte=start, starts_on__lte=end + dt.timedelta(days=4))
        .order_by("starts_on")
        .values_list("starts_on", "ends_on")
    )


def _replaceable_drafts():
    """Draft waves the planner may replace: never proposed (no decisions) and not pilots."""
    return Wave.objects.filter(status=Wave.Status.DRAFT, is_pilot=False).exclude(
        Exists(Decision.objects.filter(wave=OuterRef("pk")))
    )


def _used_capacity(exclude_waves: Sequence[int]) -> dict[tuple[str, str], tuple[int, int]]:
    """Capacity already taken in each window by waves the planner keeps (proposed, approved, pilots...)."""
    used: dict[tuple[str, str], tuple[int, int]] = {}
    kept = Wave.objects.exclude(status__in=[Wave.Status.CANCELLED, Wave.Status.COMPLETED]).exclude(
        pk__in=exclude_waves
    )
    for kind, starts_at, m, b in kept.values_list("kind", "starts_at", "planned_mailboxes", "planned_bytes"):
        key = (kind, starts_at.astimezone(dt.UTC).isoformat())
        um, ub = used.get(key, (0, 0))
        used[key] = (um + m, ub + b)
    return used


def plan_preview(*, start: dt.date, actor: User | None = None, replace_drafts: bool = True) -> Plan:
    """The plan for every plannable mailbox from `start`, saving nothing."""
    if actor is not None:
        require_programme_office(actor)
    settings = ProgrammeSettings.load()
    rules = WindowRules.from_settings(settings)
    end = start + dt.timedelta(days=settings.planning_horizon_days - 1)
    windows = windows_between(rules, start, end, closed_periods(start, end))
    replaced = list(_replaceable_drafts().values_list("pk", flat=True)) if replace_drafts else []
    qs = _plannable(replaced)
    rows = _group_rows(qs)
    orgs = _org_infos((r.organisation_id for r in rows), start, end + dt.timedelta(days=4))
    large = large_organisations(rules, orgs, rows)
    chunks = _chunk_rows(qs, large, rules.large_organisation_chunk)
    units = build_units(orgs, rows, chunks, large)
    return plan_units(windows, units, used=_used_capacity(replaced), start=start, end=end)


def wave_name(window: Window, *, pilot: bool = False) -> str:
    starts = window.starts_at.astimezone(LONDON)
    ends = window.ends_at.astimezone(LONDON)
    prefix = "Pilot " if pilot else ""
    if window.kind == EVENING:
        return f"{prefix}Evening {starts:%a} {starts.day} {starts:%b %Y}"
    return f"{prefix}Weekend {starts.day} {starts:%b} to {ends.day} {ends:%b %Y}"


@transaction.atomic
def plan_commit(
    *, start: dt.date, actor: User, expected_fingerprint: str = "", replace_drafts: bool = True
) -> tuple[Plan, list[Wave]]:
    """Save the plan as draft waves and their allocations. Replaces the draft waves of an earlier plan that
    nobody has proposed yet. Refuses if the plan is no longer the one previewed (expected_fingerprint)."""
    require_programme_office(actor)
    ProgrammeSettings.load()
    # one planner at a time: two commits at once would plan the same mailboxes twice
    ProgrammeSettings.objects.select_for_update().get(pk=1)
    # lock the drafts we replace: a proposal racing this commit waits, then finds its wave gone (WaveConflict)
    replaced = (
        list(_replaceable_drafts().select_for_update().values_list("pk", flat=True)) if replace_drafts else []
    )
    if replaced:
        Mailbox.objects.filter(wave_id__in=replaced).update(wave=None)
        Allocation.objects.filter(wave_id__in=replaced).delete()
        Wave.objects.filter(pk__in=replaced).delete()
    plan = plan_preview(start=start, replace_drafts=False)
    if expected_fingerprint and plan.fingerprint != expected_fingerprint:
        raise ValidationError(
            "The plan has changed since you previewed it (inventories or settings changed). "
            "Preview it again before saving."
        )
    now = timezone.now()
    waves = [
        Wave(
            name=wave_name(p.window),
            kind=p.window.kind,
            starts_at=p.window.starts_at,
            ends_at=p.window.ends_at,
            capacity_mailboxes=p.capacity_mailboxes,
            capacity_bytes=p.capacity_bytes,
            planned_mailboxes=p.mailboxes,
            planned_bytes=p.bytes,
            status=Wave.Status.DRAFT,
            created_at=now,
            updated_at=now,
        )
        for p in plan.waves
    ]
    waves = Wave.objects.bulk_create(waves)
    _save_allocations(
        (wave.pk, piece) for wave, planned in zip(waves, plan.waves, strict=True) for piece in planned.pieces
    )
    event_record(
        action="plan.committed",
        actor=actor,
        subject=f"{len(waves)} waves from {start}",
        message=f"{plan.mailboxes} mailboxes in {len(waves)} draft waves; {plan.unplaced_mailboxes} not placed",
        data={
            "start": start.isoformat(),
            "waves": len(waves),
            "mailboxes": plan.mailboxes,
            "bytes": plan.bytes,
            "unplaced_mailboxes": plan.unplaced_mailboxes,
            "replaced_waves": len(replaced),
            "fingerprint": plan.fingerprint,
        },
    )
    return plan, waves


def _save_allocations(items: Iterable[tuple[int, Piece]]) -> None:
    now = timezone.now()
    rows = [
        (
            wave_id,
            p.organisation_id,
            p.kind,
            p.affinity_group,
            p.first_id,
            p.last_id,
            p.mailboxes,
            p.bytes,
            now,
        )
        for wave_id, p in items
    ]
    if connection.vendor == "postgresql":
        # COPY: tens of thousands of rows in a fraction of the time of INSERTs
        table = Allocation._meta.db_table
        columns = (
            "wave_id",
            "organisation_id",
            "kind",
            "affinity_group",
            "first_mailbox_id",
            "last_mailbox_id",
            "planned_mailboxes",
            "planned_bytes",
            "created_at",
        )
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    Allocation.objects.bulk_create(
        [
            Allocation(
                wave_id=w,
                organisation_id=o,
                kind=k,
                affinity_group=g,
                first_mailbox_id=lo,
                last_mailbox_id=hi,
                planned_mailboxes=m,
                planned_bytes=b,
            )
            for w, o, k, g, lo, hi, m, b, _ in rows
        ],
        batch_size=2000,
    )


# --- people adjusting the plan -------------------------------------------------------------------------------

MOVABLE_INTO = (Wave.Status.DRAFT, Wave.Status.PROPOSED, Wave.Status.APPROVED)


@dataclass
class MoveResult:
    moved: bool
    warnings: list[str]


def _capacity_warnings(wave: Wave, add_mailboxes: int, add_bytes: int) -> list[str]:
    totals = wave_totals(wave)
    warnings = []
    mailboxes, size = totals["mailboxes"] + add_mailboxes, totals["bytes"] + add_bytes
    if mailboxes > wave.capacity_mailboxes:
        warnings.append(
            f"{wave.name} would hold {mailboxes:,} mailboxes, over its capacity of "
            f"{wave.capacity_mailboxes:,}"
        )
    if size > wave.capacity_bytes:
        warnings.append(
            f"{wave.name} would hold {size:,} bytes, over its capacity of {wave.capacity_bytes:,}"
        )
    return warnings


def _fit_warnings(wave: Wave, organisation: Organisation) -> list[str]:
    warnings = []
    starts = wave.starts_at.astimezone(LONDON).date()
    ends = wave.ends_at.astimezone(LONDON).date()
    if organisation.blackouts.filter(starts_on__lte=ends, ends_on__gte=starts).exists():
        warnings.append(f"{organisation.ods_code} has blackout dates during {wave.name}")
    if wave.kind not in organisation_allowed_kinds(organisation.preferred_window):
        warnings.append(
            f"{organisation.ods_code} prefers {organisation.get_preferred_window_display().lower()}"
        )
    return warnings


def _check_movable(wave: Wave, label: str) -> None:
    if wave.status not in MOVABLE_INTO:
        raise ValidationError(f"{label} {wave.name} is {wave.get_status_display().lower()}: it cannot change")


def _lock_movable(*waves: Wave) -> None:
    """Take the waves' row locks in id order with a conditional UPDATE on a status that allows changes, before
    touching mailboxes: an approval (wave row, then mailbox rows) can then never deadlock with a move, and
    a wave approved or cancelled meanwhile is refused (WaveConflict) instead of changed."""
    from migrations_app.services.waves import _transition

    for wave in sorted(waves, key=lambda w: w.pk):
        _transition(wave, from_statuses=tuple(MOVABLE_INTO), to_status=F("status"))


@transaction.atomic
def wave_move_organisation(
    *, actor: User, organisation: Organisation, source: Wave, target: Wave, confirm: bool = False
) -> MoveResult:
    """Move an organisation's part of one wave (its allocations and mailboxes) to another. With warnings
    (capacity, blackouts, preference) nothing moves unless confirm=True. An approved wave that changes goes
    back to proposed."""
    from migrations_app.selectors.waves import wave_members
    from migrations_app.services.waves import wave_changed, wave_refresh_totals

    require_programme_office(actor)
    if source.pk == target.pk:
        raise ValidationError("Choose a different wave to move to")
    _check_movable(source, "Wave")
    _check_movable(target, "Wave")
    part = (
        wave_members(source).filter(organisation=organisation).aggregate(n=Count("id"), b=Sum("size_bytes"))
    )
    if not part["n"]:
        raise ValidationError(f"{organisation.ods_code} has no mailboxes in {source.name}")
    warnings = _capacity_warnings(target, part["n"], part["b"] or 0) + _fit_warnings(target, organisation)
    if warnings and not confirm:
        return MoveResult(False, warnings)
    _lock_movable(source, target)
    Allocation.objects.filter(wave=source, organisation=organisation).update(wave=target)
    Mailbox.objects.filter(
        wave=source, organisation=organisation, state__in=[Mailbox.State.READY, Mailbox.State.SCHEDULED]
    ).update(wave=target, state=Mailbox.State.READY, updated_at=timezone.now())
    for wave in (source, target):
        wave_changed(wave=wave, actor=actor, reason=f"{organisation.ods_code} moved")
        wave_refresh_totals(wave=wave)
    event_record(
        action="wave.organisation_moved",
        actor=actor,
        organisation=organisation,
        wave=target,
        subject=organisation.ods_code,
        message=f"{organisation.ods_code} moved from {source.name} to {target.name}",
        data={"from_wave": source.pk, "to_wave": target.pk, "mailboxes": part["n"], "warnings": warnings},
    )
    return MoveResult(True, warnings)


@transaction.atomic
def wave_move_mailbox(*, actor: User, mailbox: Mailbox, target: Wave, confirm: bool = False) -> MoveResult:
    """Pin one mailbox to a wave (out of whatever allocation covered it)."""
    from migrations_app.selectors.waves import wave_of_mailbox
    from migrations_app.services.waves import wave_changed, wave_refresh_totals

    require_programme_office(actor)
    _check_movable(target, "Wave")
    if mailbox.state not in (Mailbox.State.READY, Mailbox.State.SCHEDULED):
        raise ValidationError(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: only ready or "
            "scheduled mailboxes can move"
        )
    source = wave_of_mailbox(mailbox)
    if source is not None and source.pk == target.pk:
        raise ValidationError(f"{mailbox.email} is already in {target.name}")
    if source is not None:
        _check_movable(source, "Wave")
    warnings = _capacity_warnings(target, 1, mailbox.size_bytes) + _fit_warnings(target, mailbox.organisation)
    if mailbox.affinity_group:
        warnings.append(
            f"{mailbox.email} is in affinity group {mailbox.affinity_group}: moving it alone splits the group"
        )
    if warnings and not confirm:
        return MoveResult(False, warnings)
    _lock_movable(*(w for w in (source, target) if w is not None))
    updated = Mailbox.objects.filter(
        pk=mailbox.pk, state__in=[Mailbox.State.READY, Mailbox.State.SCHEDULED]
    ).update(wave=target, state=Mailbox.State.READY, updated_at=timezone.now())
    if not updated:
        raise ValidationError(f"{mailbox.email} changed state meanwhile: try again")
    for wave in (w for w in (source, target) if w is not None):
        wave_changed(wave=wave, actor=actor, reason=f"{mailbox.email} moved")
        wave_refresh_totals(wave=wave)
    event_record(
        action="wave.mailbox_moved",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        wave=target,
        subject=mailbox.email,
        message=f"{mailbox.email} moved to {target.name}" + (f" from {source.name}" if source else ""),
        data={"from_wave": source.pk if source else None, "to_wave": target.pk, "warnings": warnings},
    )
    return MoveResult(True, warnings)


@transaction.atomic
def wave_place_carried_over(*, actor: User, source: Wave, target: Wave, confirm: bool = False) -> MoveResult:
    """Give the mailboxes a wave carried over (not finished when its window closed) to another wave: they
    go back to ready, pinned to the target, with their checkpoints kept (their next copy is incremental)
    and their errors cleared; the target, if approved, goes back to proposed. Mailboxes still being
    copied stay where they are until their copy ends. With warnings (capacity, blackouts, preference)
    nothing moves unless confirm=True."""
    from migrations_app.services.events import event_record_many
    from migrations_app.services.waves import wave_changed, wave_refresh_totals

    require_programme_office(actor)
    if source.pk == target.pk:
        raise ValidationError("Choose a different wave to place them in")
    _check_movable(target, "Wave")
    waiting = Mailbox.objects.filter(wave=source, carried_over=True).exclude(
        state__in=(Mailbox.State.SYNCING, Mailbox.State.CUTOVER, Mailbox.State.VERIFYING)
    )
    part = waiting.aggregate(n=Count("id"), b=Sum("size_bytes"))
    if not part["n"]:
        raise ValidationError(f"{source.name} has no carried-over mailboxes waiting to be placed")
    warnings = _capacity_warnings(target, part["n"], part["b"] or 0)
    for organisation in Organisation.objects.filter(pk__in=waiting.values("organisation_id")).order_by(
        "ods_code"
    ):
        warnings += _fit_warnings(target, organisation)
    if warnings and not confirm:
        return MoveResult(False, warnings)
    _lock_movable(target)
    rows = list(
        waiting.select_for_update().order_by("id").values_list("id", "organisation_id", "email", "state")
    )
    Mailbox.objects.filter(pk__in=[r[0] for r in rows]).update(
        wave=target,
        state=Mailbox.State.READY,
        carried_over=False,
        paused=False,
        attempts=0,
        retry_at=None,
        lease="",
        last_error_code="",
        last_error_message="",
        updated_at=timezone.now(),
    )
    event_record_many(
        dict(
            action="mailbox.placed",
            actor_id=actor.pk,
            organisation_id=org_id,
            mailbox_id=pk,
            wave_id=target.pk,
            subject=email,
            from_state=state,
            to_state=Mailbox.State.READY,
            message=f"carried over from {source.name}, placed in {target.name}",
            data={"from_wave": source.pk},
        )
        for pk, org_id, email, state in rows
    )
    wave_changed(wave=target, actor=actor, reason=f"{len(rows)} carried-over mailbox(es) from {source.name}")
    wave_refresh_totals(wave=target)
    event_record(
        action="wave.carried_over_placed",
        actor=actor,
        wave=source,
        subject=source.name,
        message=f"{len(rows)} carried-over mailbox(es) placed in {target.name}",
        data={"to_wave": target.pk, "mailboxes": len(rows), "warnings": warnings},
    )
    return MoveResult(True, warnings)


# --- pilot waves ---------------------------------------------------------------------------------------------


@transaction.atomic
def pilot_wave_create(
    *,
    actor: User,
    starts_on: dt.date,
    kind: str = EVENING,
    organisations: Iterable[Organisation] | None = None,
    per_organisation: int | None = None,
) -> Wave:
    """A pilot wave: a handful of ready ungrouped mailboxes (smallest first) from each organisation, pinned
    to a new draft wave in the window of `kind` starting on `starts_on`. One set-based UPDATE."""
    require_programme_office(actor)
    settings = ProgrammeSettings.load()
    per_org = per_organisation or settings.pilot_mailboxes_per_organisation
    if per_org < 1:
        raise ValidationError({"per_organisation": "Pick at least one mailbox per organisation"})
    rules = WindowRules.from_settings(settings)
    windows = [
        w
        for w in windows_between(rules, starts_on, starts_on, closed_periods(starts_on, starts_on))
        if w.kind == kind
    ]
    if not windows:
        raise ValidationError(
            {
                "starts_on": f"No {Wave.Kind(kind).label.lower()} window starts on {starts_on} "
                "(check the window days, bank holidays and freezes)"
            }
        )
    window = windows[0]
    candidates = Mailbox.objects.filter(
        state=Mailbox.State.READY, wave__isnull=True, affinity_group="", kind=Mailbox.Kind.USER
    )
    if organisations is not None:
        org_ids = [o.pk for o in organisations]
        if not org_ids:
            raise ValidationError({"organisations": "Choose at least one organisation"})
        candidates = candidates.filter(organisation_id__in=org_ids)
    ranked = (
        candidates.order_by()
        .annotate(
            rn=SqlWindow(
                RowNumber(),
                partition_by=[F("organisation_id")],
                order_by=[F("size_bytes").asc(), F("id").asc()],
            )
        )
        .filter(rn__lte=per_org)
        .values_list("id", "size_bytes")
    )
    picked = list(ranked)
    if not picked:
        raise ValidationError("No ready mailboxes without an affinity group to pilot in those organisations")
    if len(picked) > window.capacity_mailboxes:
        raise ValidationError(
            f"{len(picked):,} pilot mailboxes are more than the window holds "
            f"({window.capacity_mailboxes:,}): choose fewer organisations"
        )
    wave = Wave.objects.create(
        name=wave_name(window, pilot=True),
        kind=window.kind,
        is_pilot=True,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        capacity_mailboxes=window.capacity_mailboxes,
        capacity_bytes=window.capacity_bytes,
        planned_mailboxes=len(picked),
        planned_bytes=sum(size for _, size in picked),
    )
    ids = [pk for pk, _ in picked]
    for i in range(0, len(ids), 5000):
        Mailbox.objects.filter(pk__in=ids[i : i + 5000], state=Mailbox.State.READY, wave__isnull=True).update(
            wave=wave, updated_at=timezone.now()
        )
    event_record(
        action="wave.pilot_created",
        actor=actor,
        wave=wave,
        subject=wave.name,
        message=f"Pilot wave of {len(ids)} mailboxes, up to {per_org} per organisation",
        data={"mailboxes": len(ids), "per_organisation": per_org},
    )
    return wave


def require_planner(user: User) -> None:
    if not (user.is_authenticated and user.is_programme_office):
        raise PermissionDenied("Only the programme office can plan waves")


# --- programme settings and closed dates (the programme office) --------------------------------------------


SETTINGS_FIELDS = (
    "evening_days",
    "evening_starts",
    "evening_ends",
    "evening_capacity_mailboxes",
    "evening_capacity_bytes",
    "weekend_start_day",
    "weekend_starts",
    "weekend_end_day",
    "weekend_ends",
    "weekend_capacity_mailboxes",
    "weekend_capacity_bytes",
    "single_wave_organisation_max",
    "large_organisation_chunk",
    "pilot_mailboxes_per_organisation",
    "planning_horizon_days",
    "go_required_from_every_organisation",
)


@transaction.atomic
def programme_settings_update(*, actor: User, **changes) -> ProgrammeSettings:
    """Change the windows and planning rules. Waves already planned keep their capacity; the next plan uses
    the new rules."""
    require_programme_office(actor)
    settings = ProgrammeSettings.load()
    before = {name: getattr(settings, name) for name in SETTINGS_FIELDS}
    for name, value in changes.items():
        if name not in SETTINGS_FIELDS:
            raise ValidationError(f"Unknown setting {name}")
        setattr(settings, name, value)
    settings.full_clean()
    settings.save()
    changed = {
        n: [str(before[n]), str(getattr(settings, n))]
        for n in SETTINGS_FIELDS
        if before[n] != getattr(settings, n)
    }
    if changed:
        event_record(
            action="programme.settings_changed", actor=actor, subject="Programme settings", data=changed
        )
    return settings


@transaction.atomic
def closed_period_add(
    *, actor: User, kind: str, starts_on: dt.date, ends_on: dt.date, name: str
) -> ClosedPeriod:
    require_programme_office(actor)
    period = ClosedPeriod(kind=kind, starts_on=starts_on, ends_on=ends_on, name=name.strip())
    period.full_clean()
    if ends_on < starts_on:
        raise ValidationError({"ends_on": "The end date must be on or after the start date"})
    period.save()
    event_record(
        action="programme.closed_period_added",
        actor=actor,
        subject=period.name,
        message=f"{period.get_kind_display()} {starts_on} to {ends_on}",
    )
    return period


@transaction.atomic
def closed_period_remove(*, actor: User, period: ClosedPeriod) -> None:
    require_programme_office(actor)
    event_record(
        action="programme.closed_period_removed",
        actor=actor,
        subject=period.name,
        message=f"{period.get_kind_display()} {period.starts_on} to {period.ends_on}",
    )
    period.delete()


@transaction.atomic
def mailboxes_mark_ready(*, actor: User | None, organisations: Iterable[Organisation] | None = None) -> int:
    """Stand-in for pre-flight until the engines do it (demos, drills, the bench): inventoried mailboxes become
    ready. One set-based UPDATE."""
    if actor is not None:
        require_programme_office(actor)
    qs = Mailbox.objects.filter(state=Mailbox.State.INVENTORIED)
    if organisations is not None:
        qs = qs.filter(organisation__in=list(organisations))
    count = qs.update(state=Mailbox.State.READY, updated_at=timezone.now())
    event_record(
        action="mailboxes.marked_ready",
        actor=actor,
        subject=f"{count} mailboxes",
        message="Marked ready without pre-flight (demo or drill)",
        data={"mailboxes": count},
    )
    return count
