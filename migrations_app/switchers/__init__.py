"""Switchers: at cutover a mailbox's new mail starts arriving in Exchange Online (docs/adr/013-the-switch.md).

    switcher = get_switcher(method, address=..., username=..., secret=..., sessions=..., timeout_seconds=...)
    switcher.switch(targets); switcher.read_back(targets); switcher.unswitch(targets)

Implementations are imported lazily, so the simulated and manual switchers never import pypsrp.
"""

from __future__ import annotations

from migrations_app.switchers.base import (
    ACCESS_DENIED,
    MAILBOX_NOT_FOUND,
    NO_ROUTING_DOMAIN,
    SWITCH_FAILED,
    SWITCH_REFUSED,
    SWITCH_TIMEOUT,
    ManualSwitcher,
    Outcome,
    Routing,
    SimulatedSwitcher,
    Switcher,
    SwitchTarget,
    routing_address,
)

__all__ = [
    "ACCESS_DENIED",
    "MAILBOX_NOT_FOUND",
    "NO_ROUTING_DOMAIN",
    "SWITCH_FAILED",
    "SWITCH_REFUSED",
    "SWITCH_TIMEOUT",
    "ManualSwitcher",
    "Outcome",
    "Routing",
    "SimulatedSwitcher",
    "SwitchTarget",
    "Switcher",
    "get_switcher",
    "routing_address",
]

METHODS = ("simulated", "exchange-powershell", "webhook", "manual")


def get_switcher(method: str, **config) -> Switcher:
    if method == "simulated":
        return SimulatedSwitcher()
    if method == "manual":
        return ManualSwitcher()
    if method == "exchange-powershell":
        from migrations_app.switchers.powershell import ExchangePowerShellSwitcher

        return ExchangePowerShellSwitcher(**config)
    if method == "webhook":
        from migrations_app.switchers.webhook import WebhookSwitcher

        return WebhookSwitcher(**config)
    raise ValueError(f"unknown switch method {method!r}; expected one of {', '.join(METHODS)}")
