"""The exchange engine's pre-flight look into an Exchange 2013 mailbox: how many items of each class it holds (the
folders' TotalCount, search folders left out) and which items are too large for Exchange Online (one FindItem
over every folder with a restriction item:Size > 150 MB, so the mailbox is not listed item by item). Plain Python."""

from __future__ import annotations

from collections import defaultdict

from migrations_app.engines.ews_source import EwsMailbox, SourceFolder


def counts_by_class(folders: list[SourceFolder]) -> dict[str, int]:
    """Items per class (mail, calendar, contacts, tasks, notes, journal); classes with none left out."""
    counts: dict[str, int] = defaultdict(int)
    for folder in folders:
        if not folder.search and folder.total_count:
            counts[folder.kind] += folder.total_count
    return dict(counts)


def large_items(mailbox: EwsMailbox, folders: list[SourceFolder], limit: int) -> list[dict]:
    """[{"folder", "subject", "size", "class"}] for every item larger than `limit` bytes, biggest first."""
    from exchangelib import Q
    from exchangelib.fields import FieldPath
    from exchangelib.folders import Folder
    from exchangelib.items import Item
    from exchangelib.restriction import Restriction
    from exchangelib.services import FindItem

    searchable = [f for f in folders if not f.search and f.total_count]
    if not searchable:
        return []
    root = mailbox._distinguished("msgfolderroot")
    targets = [Folder(root=root, id=f.id) for f in searchable]
    names = ("subject", "size", "item_class", "parent_folder_id")
    fields = [FieldPath(field=Item.get_field_by_fieldname(n)) for n in names]
    by_id = {f.id: f for f in searchable}

    def find():
        # one FindItem for the whole mailbox (every folder in ParentFolderIds), paged by exchangelib
        restriction = Restriction(Q(size__gt=limit), folders=targets, applies_to=Restriction.ITEMS)
        out = []
        for item in FindItem(account=mailbox.account).call(
            folders=targets,
            additional_fields=fields,
            restriction=restriction,
            order_fields=None,
            shape="IdOnly",
            query_string=None,
            depth="Shallow",
            calendar_view=None,
            max_items=None,
            offset=0,
        ):
            if isinstance(item, Exception):
                raise item
            out.append(item)
        return out

    rows = [
        {
            "folder": by_id[item.parent_folder_id.id].key if item.parent_folder_id else "",
            "subject": item.subject or "",
            "size": int(item.size or 0),
            "class": item.item_class or "",
        }
        for item in mailbox._call(find)
    ]
    return sorted(rows, key=lambda r: -r["size"])
