"""The switch step of a cutover: after the final delta, a batch's mailboxes have their new mail routed to
Exchange Online by their source endpoint's switcher (migrations_app/switchers), then the catch-up delta copies
what reached the source in between (docs/adr/013-the-switch.md).

    cutover (final delta) --> cutover (switch requested, recorded) --switcher--> cutover (switched, recorded)
        --> catch-up delta --> verifying --> migrated
    a switcher that confirms later (webhook, manual): cutover --> switching, until confirmed (actions) or late
    (SWITCH_TIMEOUT, by the clock)

Never twice: "requested" is committed before the switcher is called and "switched" as soon as it answers. A run
that finds a mailbox already "requested" (its worker died in between) reads the routing back first and only
switches it if the source does not route it yet. Roll back reverses the switch first (mailbox_unswitch_run)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from migrations_app.engines import EngineError, PermanentError
from migrations_app.models import Endpoint, Mailbox
from migrations_app.services.events import event_record_many
from migrations_app.services.execution.states import M
from migrations_app.switchers import (
    SWITCH_TIMEOUT,
    Routing,
    Switcher,
    SwitchTarget,
    get_switcher,
    routing_address,
)

logger = logging.getLogger(__name__)

S = Mailbox.SwitchStatus
STEP = Mailbox.CutoverStep

# What a checklist page shows for a manual switch (templates/mailboxes/detail.html reads it from here).
MANUAL_CHECKLIST = (
    "In the Exchange Management Shell on the source, run: Set-Mailbox -Identity <mailbox> "
    "-ForwardingSmtpAddress <routing address> -DeliverToMailboxAndForward $false",
    "Read it back: Get-Mailbox -Identity <mailbox> | Format-List ForwardingSmtpAddress,DeliverToMailboxAndForward",
    "Send a test message to the mailbox's address and see it arrive in Exchange Online",
    "Confirm the switch here: the portal then copies what arrived in between (the catch-up delta)",
)


def switcher_for(endpoint: Endpoint | None) -> Switcher:
    """The source endpoint's switcher; no endpoint (a simulated wave) switches nothing real."""
    if endpoint is None:
        return get_switcher("simulated")
    return get_switcher(
        endpoint.switch_method,
        address=endpoint.switch_address,
        username=endpoint.switch_username,
        secret=endpoint.switch_secret,
        sessions=endpoint.switch_sessions,
        timeout_seconds=endpoint.switch_timeout_seconds,
        client_name=settings.SWITCH_POWERSHELL_CLIENT,
        auth=(endpoint.options or {}).get("switch_auth", "basic"),
        cert_validation=(endpoint.options or {}).get("switch_cert_validation", True),
    )


def switch_target(mailbox: Mailbox, endpoint: Endpoint | None, direction: str = "switch") -> SwitchTarget:
    domain = endpoint.routing_domain if endpoint is not None else ""
    if not domain and _method(endpoint) in ("simulated", "manual"):
        # nothing is routed by the portal itself: a placeholder, shown as such (the checklist names the domain)
        domain = "tenant.mail.onmicrosoft.com"
    stamp = int(mailbox.switch_deadline.timestamp()) if mailbox.switch_deadline else 0
    return SwitchTarget(
        mailbox_id=mailbox.pk,
        email=mailbox.email,
        identity=mailbox.source_identity or mailbox.email,
        routing_address=routing_address(
            email=mailbox.email, target_upn=mailbox.target_upn, routing_domain=domain
        ),
        request_id=f"{direction}-{mailbox.pk}-{stamp}",
    )


def _method(endpoint: Endpoint | None) -> str:
    return endpoint.switch_method if endpoint is not None else "simulated"


def cutover_switch(mailboxes: Sequence[Mailbox], journal, on_error) -> list[Mailbox]:
    """Switch a batch of mailboxes whose final delta is done (state cutover, held under `journal`'s lease).
    Returns the ones switched now, to go on to their catch-up delta; the others are parked in switching
    (confirmed later) or failed through `on_error(mailbox, error)` (retry with back-off, or failed)."""
    journal.flush()  # the final deltas are on record before anything is switched
    groups: dict[int | None, list[Mailbox]] = {}
    for mailbox in mailboxes:
        groups.setdefault(mailbox.wave.source_endpoint_id, []).append(mailbox)
    switched: list[Mailbox] = []
    for group in groups.values():
        endpoint = group[0].wave.source_endpoint
        switched += _switch_group(group, endpoint, journal, on_error)
    journal.flush()
    return switched


def _switch_group(group: list[Mailbox], endpoint: Endpoint | None, journal, on_error) -> list[Mailbox]:
    switcher = switcher_for(endpoint)
    now = timezone.now()
    targets: dict[int, SwitchTarget] = {}
    by_pk = {m.pk: m for m in group}
    for mailbox in group:
        # A webhook switch has the endpoint's time to be confirmed; a manual one waits for its person.
        if mailbox.switch_status != S.REQUESTED and switcher.method == "webhook":
            mailbox.switch_deadline = now + dt.timedelta(seconds=endpoint.switch_timeout_seconds)
        try:
            targets[mailbox.pk] = switch_target(mailbox, endpoint)
        except EngineError as error:
            on_error(mailbox, error)
    outcomes: dict[int, object] = {}
    # 1. Asked before, by a run that died before it recorded the answer: does the source route it already?
    asked = [targets[pk] for pk in targets if by_pk[pk].switch_status == S.REQUESTED]
    if asked and not switcher.confirms_later:
        for pk, outcome in switcher.read_back(asked).items():
            if outcome == Routing.TARGET:
                outcomes[pk] = outcome
    # 2. Record "requested" (committed) before asking, so a crash from here on never switches twice.
    to_ask = [t for pk, t in targets.items() if pk not in outcomes]
    _record_requested([by_pk[t.mailbox_id] for t in to_ask], journal.lease, now)
    # 3. Ask: one call for the batch (the PowerShell switcher shares it out over its sessions).
    if to_ask:
        outcomes.update(switcher.switch(to_ask))
    for pk, outcome in outcomes.items():
        mailbox = by_pk[pk]
        target = targets[pk]
        data = {"method": switcher.method, "routing_address": target.routing_address}
        if outcome == Routing.TARGET:
            journal.move(
                mailbox,
                M.CUTOVER,
                M.CUTOVER,
                action="mailbox.switched",
                message=f"new mail routed to {target.routing_address}",
                data=data,
                switch_status=S.SWITCHED,
                switched_at=now,
                cutover_step=STEP.CATCH_UP,
            )
            mailbox.switch_status = S.SWITCHED
        elif outcome == Routing.PENDING:
            journal.move(
                mailbox,
                M.CUTOVER,
                M.SWITCHING,
                action="mailbox.switch_waiting",
                message="waiting for the switch to be confirmed"
                + (f" by {mailbox.switch_deadline:%Y-%m-%d %H:%M} UTC" if mailbox.switch_deadline else ""),
                data=data,
                lease="",
                switch_deadline=mailbox.switch_deadline,
            )
        elif isinstance(outcome, EngineError):
            on_error(mailbox, outcome)
        else:
            on_error(mailbox, PermanentError("SWITCH_FAILED", f"the switcher answered {outcome!r}"))
    return [by_pk[pk] for pk, outcome in outcomes.items() if outcome == Routing.TARGET]


def _record_requested(mailboxes: list[Mailbox], lease: str, now: dt.datetime) -> None:
    """One committed UPDATE (and its events) per batch: these mailboxes are being switched."""
    if not mailboxes:
        return
    with transaction.atomic():
        for deadline in {m.switch_deadline for m in mailboxes}:
            ids = [m.pk for m in mailboxes if m.switch_deadline == deadline]
            Mailbox.objects.filter(pk__in=ids, state=M.CUTOVER, lease=lease).update(
                switch_status=S.REQUESTED,
                cutover_step=STEP.SWITCH,
                switch_deadline=deadline,
                heartbeat_at=now,
                updated_at=now,
            )
        event_record_many(
            dict(
                action="mailbox.switch_requested",
                organisation_id=m.organisation_id,
                mailbox_id=m.pk,
                wave_id=m.wave_id,
                subject=m.email,
                from_state=M.CUTOVER,
                to_state=M.CUTOVER,
                data={"method": _method(m.wave.source_endpoint)},
            )
            for m in mailboxes
            if m.switch_status != S.REQUESTED
        )
    for mailbox in mailboxes:
        mailbox.switch_status = S.REQUESTED


def switch_timeouts(*, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Switches the trust's system did not confirm in time fail with SWITCH_TIMEOUT (needs attention: the
    mailbox may or may not be routed; the page says to check, then retry or roll back). Partial index on
    switch_deadline over the switching mailboxes."""
    now = now or timezone.now()
    late = list(
        Mailbox.objects.filter(state=M.SWITCHING, switch_deadline__lt=now)
        .order_by("switch_deadline")
        .values_list("id", "organisation_id", "wave_id", "email")[:limit]
    )
    failed = 0
    message = "the switch was not confirmed within the endpoint's timeout: check where its mail goes"
    for pk, org_id, wave_id, email in late:
        with transaction.atomic():
            if not Mailbox.objects.filter(pk=pk, state=M.SWITCHING, switch_deadline__lt=now).update(
                state=M.FAILED,
                last_error_code=SWITCH_TIMEOUT,
                last_error_message=message,
                needed_attention=True,
                updated_at=now,
            ):
                continue
            event_record_many(
                [
                    dict(
                        action="mailbox.failed",
                        organisation_id=org_id,
                        mailbox_id=pk,
                        wave_id=wave_id,
                        subject=email,
                        from_state=M.SWITCHING,
                        to_state=M.FAILED,
                        message=f"{SWITCH_TIMEOUT}: {message}",
                        data={"code": SWITCH_TIMEOUT},
                    )
                ]
            )
            failed += 1
    return failed
