"""Property tests of the planner's core on plain data (no database): whatever the inventory, settings,
blackouts and closed dates, the plan keeps its promises."""

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations_app.planning.calendar import EVENING, LONDON, WEEKEND, WindowRules, windows_between
from migrations_app.planning.calendar import allowed_kinds as organisation_allowed_kinds
from migrations_app.planning.placement import BLACKOUT_COVERS_HORIZON, TOO_LARGE, plan_units
from migrations_app.planning.units import (
    ChunkRow,
    GroupRow,
    OrgInfo,
    build_units,
    group_key,
    large_organisations,
)


@dataclass(frozen=True)
class Box:
    id: int
    organisation_id: int
    group: str
    size: int


def aggregate(boxes, orgs, rules):
    """What the planner's two SQL queries return, computed in Python."""
    totals = defaultdict(lambda: [0, 0])
    for b in boxes:
        totals[(b.organisation_id, b.group)][0] += 1
        totals[(b.organisation_id, b.group)][1] += b.size
    rows = [GroupRow(o, g, n, s) for (o, g), (n, s) in totals.items()]
    large = large_organisations(rules, orgs, rows)
    chunks = []
    for org_id in sorted(large):
        ungrouped = sorted(
            (b for b in boxes if b.organisation_id == org_id and not b.group), key=lambda b: b.id
        )
        for i in range(0, len(ungrouped), rules.large_organisation_chunk):
            part = ungrouped[i : i + rules.large_organisation_chunk]
            chunks.append(ChunkRow(org_id, part[0].id, part[-1].id, len(part), sum(b.size for b in part)))
    return rows, chunks, large


def covers(piece, box):
    if piece.organisation_id != box.organisation_id:
        return False
    if piece.kind == "organisation":
        return True
    if piece.kind == "group":
        return piece.affinity_group == box.group
    return not box.group and piece.first_id <= box.id <= piece.last_id


def overlaps(first, last, periods):
    return any(s <= last and e >= first for s, e in periods)


@st.composite
def programmes(draw):
    start = draw(st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2027, 12, 1)))
    # sometimes straddle a daylight-saving change on purpose
    if draw(st.booleans()):
        start = draw(st.sampled_from([dt.date(2026, 3, 23), dt.date(2026, 10, 19), dt.date(2027, 3, 22)]))
    horizon = draw(st.integers(min_value=1, max_value=35))
    end = start + dt.timedelta(days=horizon)
    rules = WindowRules(
        evening_days=frozenset(draw(st.sets(st.integers(0, 6), max_size=5)) or {0, 1, 2, 3}),
        evening_starts=dt.time(18),
        evening_ends=dt.time(6),
        evening_capacity_mailboxes=draw(st.integers(1, 40)),
        evening_capacity_bytes=draw(st.integers(1, 4000)),
        weekend_start_day=4,
        weekend_starts=dt.time(18),
        weekend_end_day=0,
        weekend_ends=dt.time(6),
        weekend_capacity_mailboxes=draw(st.integers(1, 120)),
        weekend_capacity_bytes=draw(st.integers(1, 12000)),
        single_wave_organisation_max=draw(st.integers(1, 30)),
        large_organisation_chunk=draw(st.integers(1, 12)),
    )

    def period():
        first = start + dt.timedelta(days=draw(st.integers(-3, horizon + 3)))
        return (first, first + dt.timedelta(days=draw(st.integers(0, 10))))

    closed = [period() for _ in range(draw(st.integers(0, 2)))]
    n_orgs = draw(st.integers(1, 10))
    orgs = {}
    for org_id in range(1, n_orgs + 1):
        orgs[org_id] = OrgInfo(
            org_id,
            f"O{draw(st.integers(0, 99)):02d}{org_id}",
            draw(st.integers(0, 3)),
            draw(st.sampled_from(["any", "any", "evening", "weekend"])),
            tuple(sorted(period() for _ in range(draw(st.integers(0, 2))))),
        )
    boxes = []
    next_id = draw(st.integers(1, 1000))
    # a trust's own names (g1..g3, reused by several trusts) and one from a permissions import spanning them
    groups = ["", "", "", "g1", "g2", "g3", "perm-shared"]
    for org_id in orgs:
        for _ in range(draw(st.integers(0, 35))):
            boxes.append(Box(next_id, org_id, draw(st.sampled_from(groups)), draw(st.integers(0, 400))))
            next_id += draw(st.integers(1, 3))
    return start, end, rules, closed, orgs, boxes


def run(start, end, rules, closed, orgs, boxes, *, shuffle_seed=None):
    rows, chunks, large = aggregate(boxes, orgs, rules)
    if shuffle_seed is not None:  # the order rows arrive in from the database must not matter
        random.Random(shuffle_seed).shuffle(rows)
        random.Random(shuffle_seed).shuffle(chunks)
    windows = windows_between(rules, start, end, closed)
    units = build_units(orgs, rows, chunks, large)
    return windows, large, plan_units(windows, units, start=start, end=end)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programmes())
def test_the_plan_keeps_every_promise(programme):
    start, end, rules, closed, orgs, boxes = programme
    windows, large, plan = run(*programme)

    placed_in = {}
    for index, wave in enumerate(plan.waves):
        for box in boxes:
            if any(covers(p, box) for p in wave.pieces):
                assert box.id not in placed_in, "a mailbox is in two waves"
                placed_in[box.id] = index
    unplaced = {box.id for box in boxes for u in plan.unplaced if any(covers(p, box) for p in u.pieces)}

    # every ready mailbox is placed or reported, never both
    assert set(placed_in) | unplaced == {b.id for b in boxes}
    assert not set(placed_in) & unplaced

    by_id = {b.id: b for b in boxes}
    for index, wave in enumerate(plan.waves):
        members = [by_id[i] for i, w in placed_in.items() if w == index]
        w = wave.window
        # capacity never exceeded (counted from the mailboxes, not the planner's own sums)
        assert len(members) <= w.capacity_mailboxes
        assert sum(b.size for b in members) <= w.capacity_bytes
        assert len(members) == wave.mailboxes and sum(b.size for b in members) == wave.bytes
        # windows are real: from the rules, clear of closed dates
        assert w in windows
        assert not overlaps(w.first_day, w.last_day, closed)
        for box in members:
            info = orgs[box.organisation_id]
            # blackouts honoured, preferred window kind honoured
            assert not overlaps(w.first_day, w.last_day, info.blackouts)
            assert w.kind in organisation_allowed_kinds(info.preference)

    # affinity groups are never split (a trust's names within the trust, a permissions import's programme-wide)
    where = defaultdict(set)
    for box in boxes:
        if box.group:
            where[group_key(box.organisation_id, box.group)].add(placed_in.get(box.id, "unplaced"))
    assert all(len(places) == 1 for places in where.values())

    # a small organisation moves in one wave
    for org_id in orgs:
        if org_id not in large:
            assert len({placed_in.get(b.id, "unplaced") for b in boxes if b.organisation_id == org_id}) <= 1

    # a large organisation moves chunk by chunk over consecutive waves, never going back in time
    for org_id in large:
        order = sorted(
            (p.first_id, index)
            for index, wave in enumerate(plan.waves)
            for p in wave.pieces
            if p.organisation_id == org_id and p.kind == "chunk"
        )
        assert [index for _, index in order] == sorted(index for _, index in order)

    # every window keeps its London wall-clock times, whatever the clocks did
    for w in windows:
        start, end = w.starts_at.astimezone(LONDON), w.ends_at.astimezone(LONDON)
        rule_start, rule_end = (
            (rules.evening_starts, rules.evening_ends)
            if w.kind == EVENING
            else (rules.weekend_starts, rules.weekend_ends)
        )
        assert (start.time(), end.time()) == (rule_start, rule_end)

    # reasons are true
    for item in plan.unplaced:
        kinds = set.intersection(
            *(set(organisation_allowed_kinds(orgs[p.organisation_id].preference)) for p in item.pieces)
        )
        if item.reason == TOO_LARGE:
            assert all(
                item.mailboxes > w.capacity_mailboxes or item.bytes > w.capacity_bytes
                for w in windows
                if w.kind in kinds
            )
        if item.reason == BLACKOUT_COVERS_HORIZON:
            blackouts = [b for p in item.pieces for b in orgs[p.organisation_id].blackouts]
            assert all(overlaps(w.first_day, w.last_day, blackouts) for w in windows if w.kind in kinds)


@settings(max_examples=100, deadline=None)
@given(programmes(), st.integers(0, 1000))
def test_same_input_same_plan(programme, seed):
    _, _, first = run(*programme)
    _, _, again = run(*programme, shuffle_seed=seed)
    assert first.fingerprint == again.fingerprint
    assert [(w.window, w.pieces) for w in first.waves] == [(w.window, w.pieces) for w in again.waves]


def test_windows_default_week():
    rules = WindowRules(
        evening_days=frozenset({0, 1, 2, 3}),
        evening_starts=dt.time(18),
        evening_ends=dt.time(6),
        evening_capacity_mailboxes=22_000,
        evening_capacity_bytes=10,
        weekend_start_day=4,
        weekend_starts=dt.time(18),
        weekend_end_day=0,
        weekend_ends=dt.time(6),
        weekend_capacity_mailboxes=83_000,
        weekend_capacity_bytes=10,
    )
    windows = windows_between(rules, dt.date(2026, 6, 1), dt.date(2026, 6, 7))
    assert [(w.kind, w.first_day.isoformat(), w.last_day.isoformat()) for w in windows] == [
        (EVENING, "2026-06-01", "2026-06-02"),
        (EVENING, "2026-06-02", "2026-06-03"),
        (EVENING, "2026-06-03", "2026-06-04"),
        (EVENING, "2026-06-04", "2026-06-05"),
        (WEEKEND, "2026-06-05", "2026-06-08"),
    ]
    assert windows[-1].capacity_mailboxes == 83_000
