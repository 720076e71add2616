"""Mailboxes with their lifecycle state, the counters kept by triggers, and the source and target endpoints."""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower, Now

from migrations_app.constraints import one_of, only_if
from migrations_app.fields import EncryptedTextField
from migrations_app.models.choices import ChoiceLabels
from migrations_app.models.organisations import Organisation
from migrations_app.models.waves import Wave


class Endpoint(models.Model):
    """A source or target system. The credential is encrypted at rest and never shown back."""

    class Kind(models.TextChoices):
        SIMULATED = "simulated", "Simulated"
        IMAP = "imap", "IMAP"
        GRAPH = "graph", "Microsoft Graph (Exchange Online)"
        EXCHANGE = "exchange", "Exchange 2013 (EWS)"

    class Role(models.TextChoices):
        SOURCE = "source", "Source"
        TARGET = "target", "Target"

    class Security(models.TextChoices):
        TLS = "tls", "TLS"
        STARTTLS = "starttls", "STARTTLS"
        PLAIN = "plain", "Plain text (test systems only)"

    class SwitchMethod(models.TextChoices):
        SIMULATED = "simulated", "Simulated (test systems: nothing is rerouted)"
        EXCHANGE_POWERSHELL = "exchange-powershell", "Exchange 2013 remote PowerShell"
        WEBHOOK = "webhook", "The trust's own automation (signed webhook)"
        MANUAL = "manual", "By hand (a person confirms)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    role = models.CharField(max_length=10, choices=Role.choices)
    address = models.CharField(max_length=255, blank=True, help_text="Host name, or tenant ID for Graph")
    port = models.PositiveIntegerField(null=True, blank=True)
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.TLS)
    username = models.CharField(max_length=255, blank=True)
    secret = EncryptedTextField(blank=True, help_text="Password, client secret or key; encrypted at rest")
    options = models.JSONField(default=dict, blank=True)
    max_concurrency = models.PositiveIntegerField(default=20)
    # How a source's mailboxes are switched at cutover: their mail routed to Exchange Online, and back on roll
    # back (migrations_app/switchers, docs/adr/013-the-switch.md).
    switch_method = models.CharField(
        max_length=20, choices=SwitchMethod.choices, default=SwitchMethod.SIMULATED
    )
    switch_address = models.CharField(
        max_length=500,
        blank=True,
        help_text="Exchange PowerShell: the server's host name; webhook: the trust's https:// URL",
    )
    switch_username = models.CharField(max_length=255, blank=True)
    switch_secret = EncryptedTextField(
        blank=True, help_text="PowerShell password, or the webhook's signing secret; encrypted at rest"
    )
    # Exchange limits the remote PowerShell runspaces a user may hold (throttling policy
    # PowerShellMaxConcurrency): the sessions each worker process keeps open to this endpoint.
    switch_sessions = models.PositiveSmallIntegerField(default=8, validators=[MinValueValidator(1)])
    switch_timeout_seconds = models.PositiveIntegerField(
        default=3600, help_text="Webhook: how long the trust's system has to confirm a switch"
    )
    routing_domain = models.CharField(
        max_length=255, blank=True, help_text="The tenant's routing domain, e.g. contoso.mail.onmicrosoft.com"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()} {self.get_role_display().lower()})"


class Mailbox(ChoiceLabels, models.Model):
    """One mailbox to move. 2.1 million of these: every index below is there for a page or the API."""

    class Kind(models.TextChoices):
        USER = "user", "User"
        SHARED = "shared", "Shared"
        ROOM = "room", "Room"
        EQUIPMENT = "equipment", "Equipment"

    class State(models.TextChoices):
        INVENTORIED = "inventoried", "Inventoried"
        READY = "ready", "Ready"
        BLOCKED = "blocked", "Blocked"
        SCHEDULED = "scheduled", "Scheduled"
        SYNCING = "syncing", "Syncing"
        SYNCED = "synced", "Synced"
        CUTOVER = "cutover", "Cutting over"
        # Waiting for the trust's system or a person to confirm the switch (webhook, manual switchers).
        SWITCHING = "switching", "Switching"
        VERIFYING = "verifying", "Verifying"
        MIGRATED = "migrated", "Migrated"
        FAILED = "failed", "Failed"
        # Left the inventory (a leaver, a closed shared mailbox): kept with its history, never planned.
        RETIRED = "retired", "Retired"

    class CutoverStep(models.TextChoices):
        FINAL_DELTA = "final_delta", "Final delta"
        SWITCH = "switch", "Switch"
        CATCH_UP = "catch_up", "Catch-up delta"
        VERIFY = "verify", "Verify"

    class SwitchStatus(models.TextChoices):
        # "" (blank): never switched, mail is delivered to the source
        REQUESTED = "requested", "Switch requested"
        SWITCHED = "switched", "Switched: mail goes to Exchange Online"
        UNSWITCHING = "unswitching", "Being switched back"
        UNSWITCHED = "unswitched", "Switched back: mail goes to the source"

    # db_index=False: the (organisation, state, id) index below serves every lookup by organisation.
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="mailboxes", db_index=False
    )
    # Normalised (trimmed, lower case) by the services; the constraint below holds them to it.
    email = models.CharField("primary SMTP address", max_length=254, unique=True)
    display_name = models.CharField(max_length=256, blank=True, default="", db_default="")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.USER)
    size_bytes = models.BigIntegerField(default=0, db_default=0)
    item_count = models.BigIntegerField(default=0, db_default=0)
    source_identity = models.CharField(max_length=254, blank=True, default="", db_default="")
    target_upn = models.CharField("target UPN", max_length=254, blank=True, default="", db_default="")
    # Mailboxes that must move together (delegates and the shared mailboxes they use).
    affinity_group = models.CharField(max_length=100, blank=True, default="", db_default="")
    wave = models.ForeignKey(
        Wave, null=True, blank=True, on_delete=models.SET_NULL, related_name="mailboxes", db_index=False
    )
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.INVENTORIED, db_default="inventoried"
    )
    attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    last_error_code = models.CharField(max_length=40, blank=True, default="", db_default="")
    last_error_message = models.TextField(blank=True, default="", db_default="")
    bytes_copied = models.BigIntegerField(default=0, db_default=0)
    items_copied = models.BigIntegerField(default=0, db_default=0)
    checkpoint = models.JSONField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The run that owns the mailbox while it is syncing or cutting over (empty: claimed, not started yet).
    lease = models.CharField(max_length=32, blank=True, default="", db_default="")
    # A retryable failure waits until then before it is claimed again (exponential back-off with jitter).
    retry_at = models.DateTimeField(null=True, blank=True)
    # Not finished when its wave's window closed: left for the programme office to place again, never cut
    # over late.
    carried_over = models.BooleanField(default=False, db_default=False)
    # Held by a person: not claimed until resumed (a running copy stops at its next progress report).
    paused = models.BooleanField(default=False, db_default=False)
    # What the engine could not copy (too big for the target, rejected): folder, subject, size, reason.
    skipped_items = models.JSONField(null=True, blank=True)
    # The exchange engine's mailbox settings after its last pass: {"at", "phase", "records": [{"setting", "name",
    # "outcome": applied|skipped, "detail"}]} (engines/exchange_settings.py); the skipped ones are the CSV for the
    # tenant's Exchange admin.
    settings_report = models.JSONField(null=True, blank=True)
    # What the last pre-flight found on the source: {"classes": {mail: n, ...}, "too_large": [{folder, subject,
    # size}]} (the exchange engine; other engines say nothing).
    preflight_report = models.JSONField(null=True, blank=True)
    # Set for good the first time the mailbox fails or is retried: "the share that needed attention".
    needed_attention = models.BooleanField(default=False, db_default=False)
    # The last readiness check (services.readiness): a stable code (readiness/codes.py) and the engine's
    # words when it was blocked; when it ran. updated_at later than checked_at: the inventory row changed.
    blocked_code = models.CharField(max_length=40, blank=True, default="", db_default="")
    blocked_reason = models.TextField(blank=True, default="", db_default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    # Where its cutover stands (final delta -> switch -> catch-up delta -> verify), and where its mail goes:
    # the switch is recorded before and after it is made, so a crash never makes it twice.
    cutover_step = models.CharField(
        max_length=12, choices=CutoverStep.choices, blank=True, default="", db_default=""
    )
    switch_status = models.CharField(
        max_length=12, choices=SwitchStatus.choices, blank=True, default="", db_default=""
    )
    switched_at = models.DateTimeField(null=True, blank=True)
    # A webhook switch not confirmed by then fails with SWITCH_TIMEOUT.
    switch_deadline = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        verbose_name_plural = "mailboxes"
        constraints = [
            models.CheckConstraint(condition=Q(email=Lower("email")), name="mailbox_email_normalised"),
            models.CheckConstraint(condition=Q(size_bytes__gte=0), name="mailbox_size_not_negative"),
            models.CheckConstraint(condition=Q(item_count__gte=0), name="mailbox_items_not_negative"),
        ]
        indexes = [
            # an organisation's inventory, filtered by state, paged by id
            models.Index(fields=["organisation", "state", "id"], name="mailbox_org_state_idx"),
            # programme-wide counts by state, and work queues (ready, failed, ...)
            models.Index(fields=["state", "id"], name="mailbox_state_idx"),
            # a wave's members by state, and the workers' claims (by id) of the next ones to run
            models.Index(fields=["wave", "state", "id"], name="mailbox_wave_state_idx"),
            # affinity groups: only the mailboxes that have one
            models.Index(
                fields=["affinity_group"], name="mailbox_affinity_idx", condition=~Q(affinity_group="")
            ),
            # blocked mailboxes by reason (organisation page, dashboard, preview): only blocked ones
            models.Index(
                fields=["blocked_code", "organisation"],
                name="mailbox_blocked_idx",
                condition=Q(state="blocked"),
            ),
            # the readiness re-check's due list: the checkable mailboxes by when they were last checked
            models.Index(
                fields=["checked_at", "id"],
                name="mailbox_check_due_idx",
                condition=Q(state__in=["inventoried", "ready", "blocked"]),
            ),
            # failure triage by error code: only failed mailboxes have one
            models.Index(
                fields=["last_error_code"], name="mailbox_error_code_idx", condition=~Q(last_error_code="")
            ),
            # the webhook switches waiting for confirmation, by deadline (the tick fails the late ones)
            models.Index(
                fields=["switch_deadline"], name="mailbox_switch_deadline_idx", condition=Q(state="switching")
            ),
            # the skipped-settings CSV of an organisation or a wave: only mailboxes with a settings report
            models.Index(
                fields=["organisation", "id"],
                name="mailbox_settings_org_idx",
                condition=Q(settings_report__isnull=False),
            ),
            models.Index(
                fields=["wave", "id"],
                name="mailbox_settings_wave_idx",
                condition=Q(settings_report__isnull=False),
            ),
            # the planner's one GROUP BY (organisation, affinity group) and its chunking pass by id, over
            # the plannable mailboxes only (ready, in no wave); an index-only scan on PostgreSQL
            models.Index(
                # size_bytes as a key column rather than INCLUDE: SQLite has no covering-column indexes
                fields=["organisation", "affinity_group", "id", "size_bytes"],
                name="mailbox_plannable_idx",
                condition=Q(state="ready", wave__isnull=True),
            ),
        ]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints += [
        one_of("state", State, name="mailbox_state_valid"),
        one_of("cutover_step", CutoverStep, name="mailbox_cutover_step_valid", blank=True),
        one_of("switch_status", SwitchStatus, name="mailbox_switch_status_valid", blank=True),
        # from scheduled until it is verified, a mailbox belongs to the wave that moves it
        only_if(
            Q(
                state__in=[
                    State.SCHEDULED,
                    State.SYNCING,
                    State.SYNCED,
                    State.CUTOVER,
                    State.SWITCHING,
                    State.VERIFYING,
                ]
            ),
            Q(wave__isnull=False),
            name="mailbox_in_wave_state_has_wave",
        ),
        # a run holds the lease only while it copies, switches or verifies
        only_if(
            ~Q(lease=""),
            Q(state__in=[State.SYNCING, State.CUTOVER, State.SWITCHING, State.VERIFYING]),
            name="mailbox_lease_only_while_copying",
        ),
    ]

    def __str__(self) -> str:
        return self.email


class MailboxCounter(models.Model):
    """How many mailboxes, and how many bytes, per (organisation, wave, state, needed attention).

    Maintained by database triggers on the mailbox table (migration 0007_pages_counters: statement-level with
    transition tables on PostgreSQL, row-level on SQLite), so every writer (imports, approval, execution, the
    admin, raw SQL) keeps it right without knowing it exists; services.counters.counters_rebuild() rebuilds it
    set-based. The pages read their counts here: ~100,000 rows instead of 2.1 million mailboxes.
    wave_id is 0 for "in no wave" (no NULL in the key, so the triggers' upsert has one conflict target).
    """

    organisation_id = models.BigIntegerField()
    wave_id = models.BigIntegerField(default=0)
    state = models.CharField(max_length=12)
    needed_attention = models.BooleanField(default=False)
    mailboxes = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation_id", "wave_id", "state", "needed_attention"], name="mailboxcounter_key"
            )
        ]
        indexes = [models.Index(fields=["wave_id", "organisation_id"], name="mailboxcounter_wave_idx")]

    def __str__(self) -> str:
        return f"{self.organisation_id}/{self.wave_id}/{self.state}: {self.mailboxes}"
