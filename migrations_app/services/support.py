"""Support requests: from the public help form, and tickets from trusts that run their own service desk (the
bulk API and a CSV upload, idempotent by ticket reference). What the support rate counts (selectors/support.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from migrations_app.models import Mailbox, Organisation, SupportRequest, User
from migrations_app.selectors.scoping import require_administer
from migrations_app.services.events import event_record
from migrations_app.services.planning import LONDON

C = SupportRequest.Category
MAX_TICKETS = 10_000
TICKET_COLUMNS = ("reference", "address", "opened_at", "category")
_CATEGORY_NAMES = {**{c.value: c.value for c in C}, **{c.label.lower(): c.value for c in C}}


def support_request_submit(*, email: str, category: str, description: str) -> SupportRequest | None:
    """The public help form. Whatever the address, the person gets the same answer (minimal disclosure): a
    request is stored, for its organisation, only when the address is a mailbox we know."""
    email = (email or "").strip().lower()[:254]
    if "@" not in email or len(email) < 3:
        raise ValidationError({"email": "Enter your work email address, like jane.doe@nhs.net"})
    if category not in C.values:
        raise ValidationError({"category": "Choose what is wrong"})
    description = (description or "").strip()
    if len(description) > 2000:
        raise ValidationError({"description": "Describe the problem in 2,000 characters or fewer"})
    mailbox = Mailbox.objects.filter(email=email).select_related("organisation").first()
    if mailbox is None:
        return None
    with transaction.atomic():
        request = SupportRequest.objects.create(
            organisation=mailbox.organisation,
            mailbox=mailbox,
            wave_id=mailbox.wave_id,
            email=email,
            category=category,
            description=description,
            source=SupportRequest.Source.PUBLIC,
            opened_at=timezone.now(),
        )
        event_record(
            action="support.requested",
            organisation=mailbox.organisation,
            mailbox=mailbox,
            subject=email,
            message=request.get_category_display(),
            data={"support_request": request.pk, "category": category},
        )
    return request


@dataclass
class TicketImport:
    received: int = 0
    created: int = 0
    already_known: int = 0
    errors: list[dict] = field(default_factory=list)


def _opened_at(value: str) -> dt.datetime | None:
    value = (value or "").strip()
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        parsed = dt.datetime.combine(day, dt.time(9)) if day else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=LONDON)  # a service desk's local time
    return parsed


@transaction.atomic
def support_tickets_import(
    *, organisation: Organisation, actor: User, rows: list[dict], source: str = SupportRequest.Source.API
) -> TicketImport:
    """Import a trust's service-desk tickets: {reference, address, opened_at, category}. All or nothing: any bad
    row rejects the batch with every error listed, so nothing is half-imported. A reference seen before is left
    as it was (import the same file twice: one ticket each)."""
    require_administer(actor, organisation)
    result = TicketImport(received=len(rows))
    if not rows:
        raise ValidationError("There are no tickets to import")
    if len(rows) > MAX_TICKETS:
        raise ValidationError(f"Send at most {MAX_TICKETS:,} tickets at a time")
    addresses = {str(r.get("address") or "").strip().lower() for r in rows}
    mailboxes = {
        email: (pk, wave_id)
        for email, pk, wave_id in Mailbox.objects.filter(
            organisation=organisation, email__in=addresses
        ).values_list("email", "pk", "wave_id")
    }
    now = timezone.now()
    tickets, seen = [], set()
    for line, row in enumerate(rows, start=1):
        reference = str(row.get("reference") or "").strip()
        address = str(row.get("address") or "").strip().lower()
        category = _CATEGORY_NAMES.get(str(row.get("category") or "").strip().lower())
        opened_at = _opened_at(str(row.get("opened_at") or ""))

        def bad(column: str, message: str, line: int = line, row: dict = row) -> None:
            result.errors.append(
                {"line": line, "column": column, "value": str(row.get(column, ""))[:100], "message": message}
            )

        if not reference or len(reference) > 100:
            bad("reference", "Give the ticket reference (up to 100 characters)")
        elif reference in seen:
            bad("reference", "This reference is in the file twice")
        if address not in mailboxes:
            bad("address", f"Not a mailbox of {organisation.ods_code}")
        if category is None:
            bad("category", "Use one of: " + ", ".join(C.values))
        if opened_at is None:
            bad("opened_at", "Give the date the ticket was opened, like 2026-06-02 or 2026-06-02T09:30")
        elif opened_at > now + dt.timedelta(days=1):
            bad("opened_at", "This date is in the future")
        seen.add(reference)
        if not result.errors:
            tickets.append(
                SupportRequest(
                    organisation=organisation,
                    mailbox_id=mailboxes[address][0],
                    wave_id=mailboxes[address][1],
                    email=address,
                    category=category,
                    source=source,
                    reference=reference,
                    opened_at=opened_at,
                )
            )
    if result.errors:
        error = ValidationError(f"{len(result.errors)} problem(s) in the tickets: nothing was imported")
        error.rows = result.errors
        raise error
    known = set(
        SupportRequest.objects.filter(organisation=organisation, reference__in=seen).values_list(
            "reference", flat=True
        )
    )
    SupportRequest.objects.bulk_create(
        [t for t in tickets if t.reference not in known], batch_size=1000, ignore_conflicts=True
    )
    result.already_known = len(known)
    result.created = len(tickets) - len(known)
    event_record(
        action="support.tickets_imported",
        actor=actor,
        organisation=organisation,
        subject=organisation.ods_code,
        message=f"{result.created} new ticket(s), {result.already_known} already known",
        data={"created": result.created, "already_known": result.already_known, "source": source},
    )
    return result


def tickets_from_csv(data: bytes) -> list[dict]:
    """Rows of a ticket CSV (reference, address, opened_at, category), with a clear error for a bad file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("Save the file as CSV in UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in TICKET_COLUMNS if c not in header]
    if missing:
        raise ValidationError(
            f"The file needs the columns {', '.join(TICKET_COLUMNS)} (missing: {', '.join(missing)})"
        )
    return [{(k or "").strip().lower(): (v or "") for k, v in row.items()} for row in reader]
