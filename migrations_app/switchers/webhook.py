"""The webhook switcher: for a trust that switches its mailboxes with its own automation.

The switch is a signed POST (the portal's webhook scheme: `Portal-Signature: t=<unix>,v1=<HMAC-SHA256 of
"<t>.<body>">`, `Portal-Event-Id` the same on every retry) with the mailbox and its routing address. The POST only
asks: the step completes when the trust's system confirms through the API
(POST /api/v1/mailboxes/{id}/switch-confirm/), or fails with SWITCH_TIMEOUT once the endpoint's timeout has passed
(the orchestrator's tick). Roll back sends the same with "direction": "unswitch"."""

from __future__ import annotations

import time
from collections.abc import Sequence

from migrations_app.outbound import OutboundRefused, outbound_request
from migrations_app.services.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    USER_AGENT,
    webhook_body,
    webhook_signature,
)
from migrations_app.switchers.base import (
    NETWORK,
    SERVER_BUSY,
    SWITCH_REFUSED,
    Outcome,
    PermanentError,
    RetryableError,
    Routing,
    Switcher,
    SwitchTarget,
)

POST_TIMEOUT_SECONDS = 10


class WebhookSwitcher(Switcher):
    method = "webhook"
    confirms_later = True

    def __init__(self, *, address: str, secret: str, timeout_seconds: int = 3600, **_):
        self.url = address
        self.secret = secret
        self.timeout_seconds = timeout_seconds

    def switch(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        return {t.mailbox_id: self._ask(t, "switch") for t in targets}

    def read_back(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        return {t.mailbox_id: Routing.PENDING for t in targets}  # only the trust's confirmation can tell

    def unswitch(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        return {t.mailbox_id: self._ask(t, "unswitch") for t in targets}

    def _ask(self, target: SwitchTarget, direction: str) -> Outcome:
        message_id = target.request_id or f"{direction}-{target.mailbox_id}"
        body = webhook_body(
            {
                "id": message_id,
                "type": f"mailbox.{direction}",
                "mailbox": {"id": target.mailbox_id, "email": target.email, "identity": target.identity},
                "routing_address": target.routing_address,
                "direction": direction,
                "confirm": f"/api/v1/mailboxes/{target.mailbox_id}/switch-confirm/",
                "confirm_within_seconds": self.timeout_seconds,
            }
        )
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: webhook_signature(secret=self.secret, body=body, timestamp=now),
            EVENT_ID_HEADER: message_id,
        }
        try:  # the portal's one outbound sender: every address the name resolves to must be public
            result = outbound_request(
                "POST", self.url, content=body, headers=headers, timeout=POST_TIMEOUT_SECONDS
            )
        except OutboundRefused as exc:
            return PermanentError(SWITCH_REFUSED, f"{self.url}: {exc}")
        if result.status is None:
            return RetryableError(NETWORK, f"the trust's system did not answer: {result.reason}")
        if 200 <= result.status < 300:
            return Routing.PENDING
        answer = f"the trust's system answered {result.status} {result.reason}".rstrip()
        if result.status in (408, 429) or result.status >= 500:
            return RetryableError(SERVER_BUSY, answer)
        return PermanentError(SWITCH_REFUSED, answer)
