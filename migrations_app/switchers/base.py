"""What every switcher promises the orchestrator. A switcher routes a mailbox's new mail to Exchange Online at
cutover (switch), says where it goes now (read back), and routes it back to the source on roll back (unswitch).

Plain Python like the engines: no database. Calls take a batch of mailboxes, so one remote session switches many
of them; the answer is per mailbox, a Routing or the EngineError (stable code) that mailbox met. Error codes end
up in Mailbox.last_error_code: never rename one.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from migrations_app.engines.base import (  # noqa: F401 (re-exported: the codes a switcher may raise)
    NETWORK,
    SERVER_BUSY,
    EngineError,
    PermanentError,
    RetryableError,
)

MAILBOX_NOT_FOUND = "MAILBOX_NOT_FOUND"  # the source has no such mailbox (identity wrong, or deleted)
ACCESS_DENIED = "ACCESS_DENIED"  # the account lacks the management role, or its credentials are refused
SWITCH_REFUSED = "SWITCH_REFUSED"  # the trust's system answered 4xx to the switch request
SWITCH_TIMEOUT = "SWITCH_TIMEOUT"  # the trust's system did not confirm within the endpoint's timeout
SWITCH_FAILED = "SWITCH_FAILED"  # the source refused the change for a reason we do not recognise
NO_ROUTING_DOMAIN = "NO_ROUTING_DOMAIN"  # the endpoint has no tenant routing domain to route to


class Routing(enum.StrEnum):
    SOURCE = "source"  # delivered to the mailbox on the source (never switched, or switched back)
    TARGET = "target"  # routed to the tenant's routing address: Exchange Online receives it
    PENDING = "pending"  # asked; the trust's system or a person confirms later (webhook, manual)


@dataclass(frozen=True)
class SwitchTarget:
    mailbox_id: int
    email: str
    identity: str  # how the source knows it: its source identity, or its primary SMTP address
    routing_address: str  # user@<tenant>.mail.onmicrosoft.com
    request_id: str = ""  # the same on every retry of one request (a webhook receiver drops duplicates by it)


Outcome = Routing | EngineError


class Switcher(abc.ABC):
    method: str = ""
    # True for switchers whose switch completes later (a confirmation through the API or a page), so the
    # orchestrator parks the mailbox in "switching" rather than waiting.
    confirms_later: bool = False

    @abc.abstractmethod
    def switch(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        """Route each mailbox's new mail to its routing address. Safe to repeat."""

    @abc.abstractmethod
    def read_back(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        """Where each mailbox's mail goes now, as the source says (PENDING when only a confirmation can tell)."""

    @abc.abstractmethod
    def unswitch(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        """Deliver each mailbox's mail to the source again. Safe to repeat."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Release what the switcher holds open (sessions). Most hold nothing."""


def routing_address(*, email: str, target_upn: str, routing_domain: str) -> str:
    """The tenant's routing address for a mailbox: its target UPN's (or its address's) local part at the
    tenant's routing domain, the address Exchange Online accepts for it without any on-premises routing."""
    if not routing_domain:
        raise PermanentError(NO_ROUTING_DOMAIN, "set the tenant's routing domain on the source endpoint")
    local = (target_upn or email).split("@", 1)[0]
    return f"{local}@{routing_domain.strip().lower()}"


class SimulatedSwitcher(Switcher):
    """Test systems and demos (a Dovecot source has nothing to reroute): every switch succeeds at once."""

    method = "simulated"

    def switch(self, targets):
        return {t.mailbox_id: Routing.TARGET for t in targets}

    def read_back(self, targets):
        return {
            t.mailbox_id: Routing.PENDING for t in targets
        }  # it keeps no state: the portal's record holds

    def unswitch(self, targets):
        return {t.mailbox_id: Routing.SOURCE for t in targets}


class ManualSwitcher(Switcher):
    """A person switches the mailbox (following the checklist on its page) and confirms there."""

    method = "manual"
    confirms_later = True

    def switch(self, targets):
        return {t.mailbox_id: Routing.PENDING for t in targets}

    read_back = switch
    unswitch = switch
