"""The cutover delta: what changed on the source since the previous pass, other than new items.

Run by the pipeline at the start of the cutover pass (before new items are copied), over every target folder
the previous passes wrote into:
1. Inventories: every source item of the folders mapped to it (id, key, flags) and every target item (id,
   key, flags, whether the portal wrote it). Source and target items are paired by key, in order, as a
   multiset (two different messages sharing a key pair one to one).
2. Flags: a paired item whose flags differ gets them set on the target (IMAP +FLAGS/-FLAGS, Graph isRead /
   flag PATCH), limited to the flags the target can hold.
3. Moves: a target item the portal wrote that has no partner in its folder, whose key is waiting (unpaired)
   in another folder's source items, is moved there on the target, not copied again; the destination folder
   is then indexed by the copy that follows, so the moved item counts as already there.
4. Deletions: the portal's own target items left without a partner anywhere are deleted when the endpoint's
   policy is "copied" (the default) and left alone when it is "never". Items the portal did not write (mail
   delivered to the new mailbox, the user's own) are never touched.
docs/adr/017-cutover-delta-and-delete-policy.md says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from migrations_app.engines.pipeline.protocols import (
    Folder,
    Item,
    SourceReader,
    TargetFolder,
    TargetItem,
    TargetWriter,
)


@dataclass
class DeltaStats:
    flags_updated: int = 0
    moved_in: int = 0
    moved_out: int = 0
    deleted: int = 0


@dataclass
class _Group:
    target: TargetFolder
    folders: list[Folder] = field(default_factory=list)
    source: list[Item] = field(default_factory=list)
    items: list[TargetItem] = field(default_factory=list)
    unpaired_source: dict[str, int] = field(default_factory=dict)
    unpaired_target: list[TargetItem] = field(default_factory=list)


def carry_changes(
    reader: SourceReader,
    writer: TargetWriter,
    folders: list[Folder],
    previous: dict[str, dict],
    *,
    policy: str,
    fence: Callable[[], None] | None,
    tick: Callable[[], None],
) -> tuple[dict[str, DeltaStats], set[str]]:
    """Returns the stats per source folder key and the folder keys whose target gained moved items (the copy
    must index them)."""
    groups: dict[str, _Group] = {}
    for folder in folders:
        old = previous.get(folder.key)
        if not old:
            continue  # never copied: nothing on the target to bring up to date
        target = writer.open_folder(folder, old.get("target_state"))
        group = groups.setdefault(target.name, _Group(target))
        group.folders.append(folder)
    # Folders the items may have moved into, though never copied before (made on the source since).
    for folder in folders:
        if folder.key not in previous:
            target = writer.open_folder(folder, None)
            groups.setdefault(target.name, _Group(target)).folders.append(folder)
    stats = {folder.key: DeltaStats() for group in groups.values() for folder in group.folders}

    for group in groups.values():
        for folder in group.folders:
            group.source.extend(reader.inventory(folder))
            tick()
        group.items = writer.inventory(group.target)
        tick()
        by_key: dict[str, list[TargetItem]] = {}
        for item in group.items:
            by_key.setdefault(item.key, []).append(item)
        changes = []
        for item in group.source:
            partners = by_key.get(item.key)
            if not partners:
                group.unpaired_source[item.key] = group.unpaired_source.get(item.key, 0) + 1
                continue
            partner = partners.pop(0)
            want = writer.comparable_flags(group.target, item.flags)
            have = writer.comparable_flags(group.target, partner.flags)
            if want != have:
                changes.append((partner.id, want - have, have - want))
        group.unpaired_target = [i for items in by_key.values() for i in items if i.ours]
        if changes:
            if fence is not None:
                fence()
            writer.set_flags(group.target, changes)
            stats[group.folders[0].key].flags_updated += len(changes)

    gained: set[str] = set()
    for name, group in groups.items():
        moves: dict[str, list] = {}
        leftover: list[TargetItem] = []
        for item in group.unpaired_target:
            destination = next(
                (
                    other
                    for other_name, other in groups.items()
                    if other_name != name and other.unpaired_source.get(item.key)
                ),
                None,
            )
            if destination is None:
                leftover.append(item)
                continue
            destination.unpaired_source[item.key] -= 1
            moves.setdefault(destination.target.name, []).append(item.id)
        for destination_name, ids in moves.items():
            destination = groups[destination_name]
            if fence is not None:
                fence()
            writer.move(group.target, destination.target, ids)
            stats[group.folders[0].key].moved_out += len(ids)
            stats[destination.folders[0].key].moved_in += len(ids)
            gained.update(folder.key for folder in destination.folders)
        if leftover and policy == "copied":
            if fence is not None:
                fence()
            writer.delete(group.target, [item.id for item in leftover])
            stats[group.folders[0].key].deleted += len(leftover)
        tick()
    return stats, gained
