"""The tables of the migration programme and their state enums. No business workflows here: services write.

Sized for 2.1 million mailboxes and 22,000 organisations: every list a page or the API shows is backed by
an index named below, and nothing here walks a whole table.

One module a concern (accounts, organisations, waves, mailboxes, jobs, events; comms and exports for
notifications and background exports); every model is importable from `migrations_app.models` as before."""

from migrations_app.models.accounts import ApiToken, IdempotencyKey, User
from migrations_app.models.comms import (
    Moment,
    Notification,
    NotificationSettings,
    NotificationTemplate,
    OrganisationHold,
    OrganisationNotice,
    SupportRequest,
)
from migrations_app.models.events import APPEND_ONLY_REFUSAL, Event, Webhook, WebhookDelivery
from migrations_app.models.exports import Export
from migrations_app.models.jobs import ImportJob, ReadinessCheck
from migrations_app.models.mailboxes import Endpoint, Mailbox, MailboxCounter
from migrations_app.models.organisations import (
    ODS_CODE_PATTERN,
    BlackoutPeriod,
    Contact,
    Invitation,
    Organisation,
)
from migrations_app.models.waves import (
    Allocation,
    ClosedPeriod,
    Decision,
    ProgrammeSettings,
    Wave,
    _all_gates,
)

__all__ = [
    "Export",
    "Moment",
    "Notification",
    "NotificationSettings",
    "NotificationTemplate",
    "OrganisationHold",
    "OrganisationNotice",
    "SupportRequest",
    "APPEND_ONLY_REFUSAL",
    "Allocation",
    "ApiToken",
    "BlackoutPeriod",
    "ClosedPeriod",
    "Contact",
    "Decision",
    "Endpoint",
    "Event",
    "IdempotencyKey",
    "ImportJob",
    "Invitation",
    "Mailbox",
    "MailboxCounter",
    "ODS_CODE_PATTERN",
    "Organisation",
    "ProgrammeSettings",
    "ReadinessCheck",
    "User",
    "Wave",
    "Webhook",
    "WebhookDelivery",
    "_all_gates",
]
