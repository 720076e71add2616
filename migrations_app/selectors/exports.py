"""The rows of the CSV exports, shared by the streamed downloads (views) and the background exports
(services/exports.py): each reads its queryset in chunks, never the whole table at once."""

from collections.abc import Iterator
from typing import Any

from django.http import QueryDict

from migrations_app.errors_catalogue import explain
from migrations_app.filters import EventFilter
from migrations_app.models import User
from migrations_app.selectors.mailboxes import mailbox_search_all
from migrations_app.selectors.scoping import events_visible_to, mailboxes_visible_to

CHUNK_SIZE = 2000  # rows fetched per round trip by queryset.iterator(chunk_size=...)

AUDIT_CSV_HEADER = [
    "id",
    "when",
    "action",
    "actor",
    "ods_code",
    "subject",
    "from_state",
    "to_state",
    "message",
]
MAILBOX_CSV_HEADER = [
    "email",
    "display_name",
    "ods_code",
    "kind",
    "size_bytes",
    "item_count",
    "affinity_group",
    "state",
    "wave",
    "attempts",
    "last_error_code",
    "last_error_message",
    "bytes_copied",
    "target_upn",  # the export uploads again as an inventory (the other state columns are ignored)
    "last_error_meaning",  # errors_catalogue: the code in words, and what to do
    "last_error_action",
]


def audit_events(user: User, params: QueryDict):
    """The audit log's events for this user and these filters, newest first."""
    filters = EventFilter(params or None, queryset=events_visible_to(user).order_by("-id"))
    return filters.qs if filters.is_bound else filters.queryset


def audit_csv_rows(events) -> Iterator[list[Any]]:
    for e in events.select_related("actor", "organisation").iterator(chunk_size=CHUNK_SIZE):
        yield [
            e.id,
            e.created_at.isoformat(),
            e.action,
            e.actor.username if e.actor else "",
            e.organisation.ods_code if e.organisation else "",
            e.subject,
            e.from_state,
            e.to_state,
            e.message,
        ]


def _explained(code: str) -> tuple[str, str]:
    why = explain(code)
    return (why.meaning, why.action) if why else ("", "")


def mailbox_csv_rows(mailboxes) -> Iterator[list[Any]]:
    """The rows of any mailbox export (search, inventory, wave, failures), read in chunks as they stream."""
    for m in mailboxes.select_related("organisation", "wave").iterator(chunk_size=CHUNK_SIZE):
        yield [
            m.email,
            m.display_name,
            m.organisation.ods_code,
            m.kind,
            m.size_bytes,
            m.item_count,
            m.affinity_group,
            m.state,
            m.wave.name if m.wave else "",
            m.attempts,
            m.last_error_code,
            m.last_error_message,
            m.bytes_copied,
            m.target_upn,
            *_explained(m.last_error_code),
        ]


def export_rows(kind: str, user: User, params: QueryDict) -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows) of a background export, scoped to the user who asked, with the page's filters."""
    if kind == "audit":
        return AUDIT_CSV_HEADER, audit_csv_rows(audit_events(user, params))
    query = (params.get("q") or "").strip()
    visible = mailboxes_visible_to(user)
    mailboxes = mailbox_search_all(visible, query) if query else visible.order_by("id")  # none: every one
    return MAILBOX_CSV_HEADER, mailbox_csv_rows(mailboxes)
