"""What Exchange Online will hold for a mailbox, as far as Graph says: the user's licences (licenseDetails)
name the Exchange Online service plan, and each plan has a documented default mailbox quota (Exchange Online
limits, "Mailbox storage limits"). An administrator can set a different quota per mailbox, which Graph does
not show: the endpoint's options["quota_bytes"] then states it, and wins."""

from __future__ import annotations

import logging

from migrations_app.engines.base import PermanentError
from migrations_app.engines.graph_client import GraphClient

log = logging.getLogger(__name__)

GB = 1024**3
# Exchange Online service plan -> its default ProhibitSendReceiveQuota.
PLAN_QUOTAS = {
    "EXCHANGE_S_ENTERPRISE": 100 * GB,  # Exchange Online (Plan 2): E3, E5
    "EXCHANGE_S_STANDARD": 50 * GB,  # Exchange Online (Plan 1): E1, Business
    "EXCHANGE_S_STANDARD_MIDMARKET": 50 * GB,
    "EXCHANGE_S_ESSENTIALS": 50 * GB,
    "EXCHANGE_S_DESKLESS": 2 * GB,  # Exchange Online Kiosk: F1, F3 (front-line staff)
}
UNLICENSED_QUOTAS = {"shared": 50 * GB, "room": 50 * GB, "equipment": 50 * GB}  # need no licence


def mailbox_quota(graph: GraphClient, user: str, kind: str, options: dict) -> int | None:
    """The mailbox's quota in bytes, or None when nothing says (the app may not read licences)."""
    if options.get("quota_bytes"):
        return int(options["quota_bytes"])
    try:
        licences = graph.get(f"users/{user}/licenseDetails")["value"]
    except PermanentError as exc:  # no LicenseAssignment.Read.All / User.Read.All: the quota is unknown
        log.info("licenseDetails unreadable for the Graph endpoint (%s); quota not checked", exc.code)
        return None
    quotas = [
        PLAN_QUOTAS[plan["servicePlanName"]]
        for licence in licences
        for plan in licence.get("servicePlans", [])
        if plan.get("servicePlanName") in PLAN_QUOTAS and plan.get("provisioningStatus") != "Disabled"
    ]
    if quotas:
        return max(quotas)
    return UNLICENSED_QUOTAS.get(kind)
