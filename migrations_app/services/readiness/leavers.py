"""Leavers: a mailbox that left the inventory is *retired*, kept with its history (never deleted), never
planned and not counted as work left; it can be brought back. Refused while the mailbox is being moved.

A *complete* inventory lists every mailbox of the organisation: those it leaves out are previewed
(leavers_in_file) and, once a person confirms, retired together (leavers_retire)."""

from __future__ import annotations

import csv
import io
import typing
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from migrations_app.models import Mailbox, Organisation, User
from migrations_app.selectors.scoping import require_administer
from migrations_app.services.events import event_record, event_record_many
from migrations_app.services.wave_moves import waves_refresh_planned

M = Mailbox.State
# Not in flight: nothing is being copied, nothing is scheduled to be.
RETIRABLE = (M.INVENTORIED, M.READY, M.BLOCKED, M.FAILED)
IN_FLIGHT = (M.SCHEDULED, M.SYNCING, M.SYNCED, M.CUTOVER, M.VERIFYING)


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": f"Give a reason to {what} the mailbox"})
    return reason


@transaction.atomic
def mailbox_retire(*, mailbox: Mailbox, actor: User, reason: str) -> Mailbox:
    require_administer(actor, mailbox.organisation)
    reason = _reason(reason, "retire")
    if mailbox.state in IN_FLIGHT:
        raise ValidationError(
            f"{mailbox.email} is {mailbox.get_state_display().lower()}: it is being moved, so it cannot be "
            "retired now. Cancel it from its wave first."
        )
    before = mailbox.state
    updated = Mailbox.objects.filter(pk=mailbox.pk, state__in=RETIRABLE).update(
        state=M.RETIRED, wave=None, updated_at=timezone.now()
    )
    if not updated:
        raise ValidationError(f"{mailbox.email} changed state meanwhile: reload and try again")
    mailbox.refresh_from_db()
    if before == M.READY:
        waves_refresh_planned(organisation_ids=[mailbox.organisation_id])
    event_record(
        action="mailbox.retired",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        subject=mailbox.email,
        from_state=before,
        to_state=M.RETIRED,
        message=reason,
    )
    return mailbox


@transaction.atomic
def mailbox_reinstate(*, mailbox: Mailbox, actor: User, reason: str) -> Mailbox:
    """Back to inventoried (it needs a new readiness check before it is planned)."""
    require_administer(actor, mailbox.organisation)
    reason = _reason(reason, "bring back")
    updated = Mailbox.objects.filter(pk=mailbox.pk, state=M.RETIRED).update(
        state=M.INVENTORIED, checked_at=None, blocked_code="", blocked_reason="", updated_at=timezone.now()
    )
    if not updated:
        raise ValidationError(f"{mailbox.email} is not retired")
    mailbox.refresh_from_db()
    event_record(
        action="mailbox.reinstated",
        actor=actor,
        organisation=mailbox.organisation,
        mailbox=mailbox,
        subject=mailbox.email,
        from_state=M.RETIRED,
        to_state=M.INVENTORIED,
        message=reason,
    )
    return mailbox


# --- complete inventories: whoever is not in the file has left ------------------------------------------------

LEAVERS_PREVIEW_MAX = 1000


def _file_addresses(source: typing.BinaryIO) -> set[str]:
    """The normalised addresses in a CSV's email column (one streaming pass; an organisation's file)."""
    from migrations_app.services.imports import normalise_header

    text = io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline="")
    try:
        reader = csv.reader(text)
        header = [normalise_header(h) for h in next(reader, [])]
        if "email" not in header:
            raise ValidationError("The file has no email column")
        column = header.index("email")
        return {row[column].strip().lower() for row in reader if len(row) > column and row[column].strip()}
    finally:
        text.detach()


@dataclass
class Leavers:
    """The organisation's mailboxes that a complete inventory no longer lists."""

    retirable: list[tuple[int, str, str]]  # (id, email, state), at most LEAVERS_PREVIEW_MAX shown
    in_flight: list[tuple[int, str, str]]  # listed, but refused: being moved
    count: int

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "retirable": [{"id": i, "email": e, "state": s} for i, e, s in self.retirable],
            "in_flight": [{"id": i, "email": e, "state": s} for i, e, s in self.in_flight],
        }


def leavers_in_file(*, organisation: Organisation, source: typing.BinaryIO) -> Leavers:
    """Preview: the organisation's mailboxes (not retired) absent from a complete inventory file. One pass over
    the organisation's addresses (the (organisation, state, id) index), compared with the file's in memory."""
    listed = _file_addresses(source)
    rows = (
        Mailbox.objects.filter(organisation=organisation)
        .exclude(state=M.RETIRED)
        .order_by("id")
        .values_list("id", "email", "state")
    )
    absent = [row for row in rows.iterator(chunk_size=5000) if row[1] not in listed]
    retirable = [r for r in absent if r[2] in RETIRABLE]
    in_flight = [r for r in absent if r[2] not in RETIRABLE]
    return Leavers(retirable, in_flight, len(absent))


@transaction.atomic
def leavers_retire(
    *, organisation: Organisation, actor: User | None, source: typing.BinaryIO, reason: str
) -> Leavers:
    """Confirmed: retire the organisation's mailboxes absent from the complete inventory (read again now), in
    one conditional UPDATE; those in flight are left as they are and returned. An Event per mailbox."""
    if actor is not None:
        require_administer(actor, organisation)
    reason = _reason(reason, "retire")
    leavers = leavers_in_file(organisation=organisation, source=source)
    ids = [pk for pk, _, _ in leavers.retirable]
    now = timezone.now()
    done: list[tuple[int, str, str]] = []
    for i in range(0, len(ids), 5000):
        chunk = ids[i : i + 5000]
        locked = Mailbox.objects.filter(pk__in=chunk, state__in=RETIRABLE)
        if connection.features.has_select_for_update:
            locked = locked.select_for_update()
        rows = list(locked.values_list("id", "email", "state"))
        Mailbox.objects.filter(pk__in=[r[0] for r in rows], state__in=RETIRABLE).update(
            state=M.RETIRED, wave=None, updated_at=now
        )
        done += rows
    event_record_many(
        dict(
            action="mailbox.retired",
            actor_id=actor.pk if actor is not None else None,
            organisation_id=organisation.pk,
            mailbox_id=pk,
            subject=email,
            from_state=state,
            to_state=M.RETIRED,
            message=reason,
            data={"complete_inventory": True},
        )
        for pk, email, state in done
    )
    if any(state == M.READY for _, _, state in done):
        waves_refresh_planned(organisation_ids=[organisation.pk])
    return Leavers(done, leavers.in_flight, len(done) + len(leavers.in_flight))
