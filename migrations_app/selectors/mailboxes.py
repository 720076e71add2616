"""Mailbox reads for the search page, a mailbox's page and the exports. Scoping comes in from
selectors.scoping (pass mailboxes_visible_to(user)).

Search is by prefix only, each side served by its own index and read in that index's order, so a search stops
after one page of index entries however many mailboxes match ("mailbox" matches 2.1 million display names):
- the address: the unique index on email (a range email >= q AND email < q + U+10FFFF, which is the prefix
  under the database's code-point collation, checked again with startswith);
- the display name: mailbox_display_name_prefix_idx on lower(display_name) COLLATE "C" (migration 0007), which
  serves both LIKE 'q%' and the ORDER BY.
"""

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import Collate, Lower

from migrations_app.models import Mailbox

SEARCH_LIMIT = 50
# what a list of mailboxes shows (not the checkpoint, messages, leases...)
LIST_FIELDS = (
    "id",
    "email",
    "display_name",
    "kind",
    "size_bytes",
    "state",
    "organisation__ods_code",
    "wave__name",
)
_TOP = "\U0010ffff"


def _name_key():
    # "C" on PostgreSQL matches the index; SQLite compares bytes (BINARY) by default anyway
    return Collate(Lower("display_name"), "C" if connection.vendor == "postgresql" else "BINARY")


def mailboxes_by_address_prefix(mailboxes: QuerySet[Mailbox], prefix: str) -> QuerySet[Mailbox]:
    prefix = prefix.strip().lower()
    return mailboxes.filter(email__gte=prefix, email__lt=prefix + _TOP, email__startswith=prefix).order_by(
        "email"
    )


def mailboxes_by_name_prefix(mailboxes: QuerySet[Mailbox], prefix: str) -> QuerySet[Mailbox]:
    prefix = prefix.strip().lower()
    return (
        mailboxes.alias(name_key=_name_key()).filter(name_key__startswith=prefix).order_by("name_key", "id")
    )


def mailbox_search(mailboxes: QuerySet[Mailbox], query: str, *, limit: int = SEARCH_LIMIT) -> list[Mailbox]:
    """Up to `limit` mailboxes whose address or display name starts with the query: address matches first,
    then display-name matches (two index range scans, each stopping at `limit`)."""
    query = query.strip().lower()
    if not query:
        return []
    found: dict[int, Mailbox] = {}
    searches = [mailboxes_by_address_prefix(mailboxes, query)]
    if "@" not in query:  # a display name has no @: an address search needs no second query
        searches.append(mailboxes_by_name_prefix(mailboxes, query))
    for qs in searches:
        if len(found) >= limit:
            break  # a page of address matches already: the name matches would not be shown
        for mailbox in qs.select_related("organisation", "wave").only(*LIST_FIELDS)[:limit]:
            found.setdefault(mailbox.pk, mailbox)
    return list(found.values())[:limit]


def mailbox_search_all(mailboxes: QuerySet[Mailbox], query: str) -> QuerySet[Mailbox]:
    """Every match, for the CSV export (streamed by id)."""
    query = query.strip().lower()
    if not query:
        return mailboxes.none()
    by_address = Q(email__gte=query, email__lt=query + _TOP, email__startswith=query)
    return (
        mailboxes.alias(name_key=_name_key())
        .filter(by_address | Q(name_key__startswith=query))
        .order_by("id")
    )


def mailbox_skipped_items(mailbox: Mailbox) -> list[dict]:
    """What the engine skipped (too big for the target, refused by it), kept on the mailbox by every copy
    that found some (services.execution), never dropped silently; older rows had them only in the
    checkpoint."""
    return list(mailbox.skipped_items or (mailbox.checkpoint or {}).get("skipped", []))


CLASS_LABELS = {
    "mail": "Mail",
    "calendar": "Calendar",
    "contacts": "Contacts",
    "tasks": "Tasks",
    "notes": "Notes",
    "journal": "Journal",
}


def mailbox_class_progress(mailbox: Mailbox) -> list[dict]:
    """Per item class, what the copy has put on the target out of what the source holds (the exchange engine
    counts by class in its checkpoint; other engines move mail only and have no such counts: an empty list)."""
    classes = (mailbox.checkpoint or {}).get("classes") or {}
    rows = []
    for key, label in CLASS_LABELS.items():
        counts = classes.get(key)
        if not counts or not (counts.get("total") or counts.get("copied")):
            continue
        copied, total = max(int(counts.get("copied", 0)), 0), int(counts.get("total", 0))
        rows.append({"class": key, "label": label, "copied": copied, "total": total, "done": copied >= total})
    return rows
