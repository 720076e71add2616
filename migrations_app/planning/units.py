"""Units: the pieces of the plan (organisations, affinity groups, chunks of a large organisation) joined into
what must share a wave, in planning order. Plain Python."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from migrations_app.planning.calendar import WindowRules, allowed_kinds

# Allocation.Kind values
ORGANISATION, GROUP, CHUNK = "organisation", "group", "chunk"


@dataclass(frozen=True)
class OrgInfo:
    id: int
    code: str
    priority: int = 100
    preference: str = "any"
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
        kinds = allowed_kinds(info.preference if info else "any")
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


# Names a permissions import gives its groups (services/affinity.group_name); the inventory import refuses them.
PERMISSIONS_GROUP_PREFIX = "perm-"


def group_key(organisation_id: int, name: str) -> tuple:
    """The planner's key for an affinity group. A group from a permissions import (the programme office's may
    span organisations) is keyed by its name alone; any other name is one a trust chose, keyed within its
    organisation: one trust reusing another's group name (and setting a year-long blackout) used to move the
    other trust's mailboxes with it."""
    if name.startswith(PERMISSIONS_GROUP_PREFIX):
        return ("g", 0, name)  # 0: no organisation (keys of one shape, so they sort)
    return ("g", organisation_id, name)


def build_units(
    orgs: dict[int, OrgInfo],
    rows: Iterable[GroupRow],
    chunks: Iterable[ChunkRow],
    large: set[int],
) -> list[Unit]:
    """Pieces joined into the units that must share a wave, in planning order.

    A small organisation is one piece (all of it, groups included). A large organisation gives one piece
    per affinity group and one per chunk of its ungrouped mailboxes. An affinity group that spans
    organisations joins everything it touches into one unit. Only a permissions import names such a group
    (group_key): a name a trust typed is its own, so another trust reusing it links nothing."""
    uf = _UnionFind()
    pieces_of: dict[tuple, list[Piece]] = defaultdict(list)
    small_totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    group_seen: set[str] = set()
    for row in sorted(rows, key=lambda r: (r.organisation_id, r.affinity_group)):
        if row.organisation_id in large:
            if row.affinity_group:  # ungrouped mailboxes of large organisations come as chunks
                key = group_key(row.organisation_id, row.affinity_group)
                uf.find(key)
                pieces_of[key].append(
                    Piece(
                        row.organisation_id,
                        GROUP,
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
                uf.union(key, group_key(row.organisation_id, row.affinity_group))
    for org_id, (count, size) in small_totals.items():
        pieces_of[("o", org_id)].append(Piece(org_id, ORGANISATION, "", None, None, count, size))
    for chunk in sorted(chunks, key=lambda c: (c.organisation_id, c.first_id)):
        key = ("c", chunk.organisation_id, chunk.first_id)
        uf.find(key)
        pieces_of[key].append(
            Piece(
                chunk.organisation_id,
                CHUNK,
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
        kinds = frozenset.intersection(*(allowed_kinds(i.preference) for i in infos))
        blackouts = tuple(sorted({b for i in infos for b in i.blackouts}))
        mailboxes = sum(p.mailboxes for p in pieces)
        size = sum(p.bytes for p in pieces)
        first = pieces[0]
        if lead.id in large:
            # A large organisation's groups go first, largest first (they are the hard ones to fit); then
            # its chunks in id order.
            lead_pieces = [p for p in pieces if p.organisation_id == lead.id]
            is_chunk = all(p.kind == CHUNK for p in lead_pieces)
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
