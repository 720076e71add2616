"""The tables of the migration programme and their state enums. No business workflows here: services write.

Sized for 2.1 million mailboxes and 22,000 organisations: every list a page or the API shows is backed by
an index named below, and nothing here walks a whole table.
"""

import datetime

import pgtrigger
from django.contrib.auth.models import AbstractUser
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower, Now, Upper

from migrations_app.constraints import one_of, only_if
from migrations_app.expressions import CurrentTransactionId
from migrations_app.fields import EncryptedTextField

ODS_CODE_PATTERN = r"^[A-Z0-9]{1,9}$"


class User(AbstractUser):
    """A person who signs in. Local accounts now; Entra ID accounts are keyed by `entra_oid` later."""

    class Role(models.TextChoices):
        PROGRAMME_OFFICE = "programme_office", "Programme office"
        TRUST_ADMIN = "trust_admin", "Trust admin"
        VIEWER = "viewer", "Read-only viewer"

    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    # The organisations a trust admin administers (a user may administer several).
    organisations = models.ManyToManyField(
        "Organisation",
        blank=True,
        related_name="admins",
        help_text="Organisations this trust admin administers",
    )
    entra_oid = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    @property
    def is_programme_office(self) -> bool:
        return self.is_active and (self.role == self.Role.PROGRAMME_OFFICE or self.is_superuser)

    @property
    def is_trust_admin(self) -> bool:
        return self.is_active and self.role == self.Role.TRUST_ADMIN

    @property
    def is_viewer(self) -> bool:
        return self.is_active and self.role == self.Role.VIEWER


class Organisation(models.Model):
    """An NHS organisation whose mailboxes move: a trust, one of its sites, a GP practice, a pharmacy..."""

    class Kind(models.TextChoices):
        TRUST = "trust", "NHS trust"
        TRUST_SITE = "trust_site", "Trust site"
        GP_PRACTICE = "gp_practice", "GP practice"
        PHARMACY = "pharmacy", "Pharmacy"
        ICB = "icb", "Integrated care board"
        DENTAL = "dental", "Dental practice"
        OPTOMETRY = "optometry", "Optometry practice"
        NATIONAL = "national", "National body"
        OTHER = "other", "Other"

    class Region(models.TextChoices):
        LONDON = "london", "London"
        SOUTH_EAST = "south_east", "South East"
        SOUTH_WEST = "south_west", "South West"
        EAST_OF_ENGLAND = "east_of_england", "East of England"
        MIDLANDS = "midlands", "Midlands"
        NORTH_EAST_YORKSHIRE = "north_east_yorkshire", "North East and Yorkshire"
        NORTH_WEST = "north_west", "North West"
        NATIONAL = "national", "National"

    class Status(models.TextChoices):
        INVITED = "invited", "Invited"
        ENROLLED = "enrolled", "Enrolled"
        READY = "ready", "Ready"
        MIGRATING = "migrating", "Migrating"
        MIGRATED = "migrated", "Migrated"

    class WindowPreference(models.TextChoices):
        ANY = "any", "No preference"
        EVENING = "evening", "Weekday evenings"
        WEEKEND = "weekend", "Weekends"

    ods_code = models.CharField("ODS code", max_length=9, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TRUST)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    region = models.CharField(max_length=30, choices=Region.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ENROLLED)
    preferred_window = models.CharField(
        max_length=10, choices=WindowPreference.choices, default=WindowPreference.ANY
    )
    # Set by the programme office: lower numbers are planned first.
    priority = models.PositiveSmallIntegerField(default=100)
    # Readiness gates: all must be met before the organisation is ready to plan.
    gate_mfa_enforced = models.BooleanField("Multi-factor sign-in enforced", default=False)
    gate_acceptable_use = models.BooleanField("Acceptable-use policy accepted", default=False)
    gate_licences_assigned = models.BooleanField("Exchange Online licences assigned", default=False)
    gate_service_desk_briefed = models.BooleanField("Local service desk briefed", default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)

    GATES = (
        "gate_mfa_enforced",
        "gate_acceptable_use",
        "gate_licences_assigned",
        "gate_service_desk_briefed",
    )

    class Stage(models.TextChoices):
        """Where the organisation stands on the programme's path (services.readiness.stages moves it)."""

        ENROLLED = "enrolled", "Enrolled"
        READINESS = "readiness", "Readiness"
        PILOT = "pilot", "Pilot"
        SYNC_SWITCH = "sync_switch", "Sync & Switch"
        MOP_UP = "mop_up", "Mop-up"
        CLOSED = "closed", "Closed"

    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.ENROLLED)
    stage_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["ods_code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ods_code__regex=ODS_CODE_PATTERN), name="organisation_ods_code_format"
            ),
            models.CheckConstraint(condition=~Q(parent=F("id")), name="organisation_not_own_parent"),
        ]
        indexes = [
            models.Index(fields=["status", "ods_code"], name="organisation_status_idx"),
            models.Index(fields=["stage", "ods_code"], name="organisation_stage_idx"),
            models.Index(fields=["region", "ods_code"], name="organisation_region_idx"),
            models.Index(fields=["parent"], name="organisation_parent_idx"),
            models.Index(Upper("name"), name="organisation_name_upper_idx"),
        ]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints += [one_of("status", Status, name="organisation_status_valid")]

    def __str__(self) -> str:
        return f"{self.ods_code} {self.name}"

    @property
    def gates(self) -> list[tuple[str, str, bool]]:
        return [(name, self._meta.get_field(name).verbose_name, getattr(self, name)) for name in self.GATES]

    @property
    def gates_met(self) -> bool:
        return all(getattr(self, name) for name in self.GATES)

    def missing_gates(self, required: list[str] | tuple[str, ...]) -> list[str]:
        """The required gates (field names) this organisation has not met."""
        return [name for name in required if name in self.GATES and not getattr(self, name)]


class Contact(models.Model):
    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary contact"
        TECHNICAL = "technical", "Technical contact"
        SERVICE_DESK = "service_desk", "Service desk"

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="contacts")
    role = models.CharField(max_length=20, choices=Role.choices)
    name = models.CharField(max_length=200)
    email = models.EmailField()
    phone = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "role"], name="contact_one_per_role")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()})"


class BlackoutPeriod(models.Model):
    """Dates on which an organisation's mailboxes must not move (an audit, a go-live, winter pressures)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="blackouts")
    starts_on = models.DateField()
    ends_on = models.DateField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["starts_on"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_on__gte=F("starts_on")), name="blackout_ends_after_start")
        ]
        indexes = [models.Index(fields=["organisation", "starts_on"], name="blackout_org_idx")]

    def __str__(self) -> str:
        return f"{self.starts_on} to {self.ends_on}"


class Invitation(models.Model):
    """The programme office invites a trust admin to enrol a pre-created organisation. Token stored hashed."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Invitation for {self.email} to {self.organisation.ods_code}"


class Wave(models.Model):
    """A migration window: an evening or a weekend, with a capacity in mailboxes and bytes."""

    class Kind(models.TextChoices):
        EVENING = "evening", "Weekday evening"
        WEEKEND = "weekend", "Weekend"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PROPOSED = "proposed", "Proposed"
        APPROVED = "approved", "Approved"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    is_pilot = models.BooleanField(default=False)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    capacity_mailboxes = models.PositiveIntegerField()
    capacity_bytes = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    proposed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Whoever last changed what the wave holds (proposing it, moving organisations or mailboxes in or out, a
    # no-go, a go recorded on a trust's behalf): four eyes keeps them from approving it (services/waves.py).
    changed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approved_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    # The status to go back to on resume (approved or running).
    paused_from = models.CharField(max_length=12, blank=True, default="")
    # Maintained by the planning services (selectors.waves.wave_totals), so lists never count 2.1M rows.
    planned_mailboxes = models.PositiveIntegerField(default=0)
    planned_bytes = models.BigIntegerField(default=0)
    # Set when approval stamped the wave on its mailbox rows; membership is then mailbox.wave alone.
    stamped_at = models.DateTimeField(null=True, blank=True)
    # Where the wave's mailboxes move from and to; both empty means the simulated engine (demos, drills).
    source_endpoint = models.ForeignKey(
        "Endpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    target_endpoint = models.ForeignKey(
        "Endpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="wave_ends_after_start"),
            models.CheckConstraint(condition=Q(capacity_bytes__gte=0), name="wave_capacity_bytes_positive"),
        ]
        indexes = [models.Index(fields=["status", "starts_at"], name="wave_status_idx")]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints += [
        one_of("status", Status, name="wave_status_valid"),
        # paused remembers what it was paused from, so resume knows where to go back to
        only_if(
            Q(status=Status.PAUSED),
            Q(paused_from__in=[Status.APPROVED, Status.RUNNING]),
            name="wave_paused_from_known",
        ),
    ]

    def __str__(self) -> str:
        return self.name


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


class Mailbox(models.Model):
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


class Decision(models.Model):
    """Who approved, rejected, or gave go / no-go for what, when, and why."""

    class Kind(models.TextChoices):
        PROPOSE = "propose", "Proposed"
        GO = "go", "Go"
        NO_GO = "no_go", "No-go"
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        CANCEL = "cancel", "Cancelled"

    wave = models.ForeignKey(Wave, on_delete=models.PROTECT, related_name="decisions")
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    actor = models.ForeignKey(User, on_delete=models.PROTECT, related_name="decisions")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["wave", "created_at"], name="decision_wave_idx"),
            models.Index(fields=["organisation", "created_at"], name="decision_org_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.wave} by {self.actor}"

    @property
    def on_behalf(self) -> bool:
        """A go or no-go the programme office recorded for an organisation (with its reason)."""
        return self.organisation_id is not None and self.actor.is_programme_office


class ImportJob(models.Model):
    """One inventory or permissions upload: its file, its outcome and every bad row found in it."""

    class Kind(models.TextChoices):
        INVENTORY = "inventory", "Mailbox inventory"
        PERMISSIONS = "permissions", "Mailbox permissions"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Imported"
        REJECTED = "rejected", "Not imported: the file has errors"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVENTORY)
    # Null for a national file (programme office) that names each row's organisation.
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="import_jobs"
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    filename = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    import_valid_rows = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_valid = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # The first errors, each {"line": n, "column": name, "value": text, "message": text}.
    errors = models.JSONField(default=list, blank=True)
    # Extra results: the largest affinity groups after a permissions import, ...
    summary = models.JSONField(default=dict, blank=True)
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Runs started (a worker lost mid-import is taken over, up to IMPORT_MAX_ATTEMPTS), and when the sweeper
    # last sent a task for a job still queued (services/sweeps.py).
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="importjob_org_idx")]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints = [one_of("status", Status, name="importjob_status_valid")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.filename}"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.REJECTED, self.Status.FAILED}


APPEND_ONLY_REFUSAL = (
    "RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME"
    " USING ERRCODE = 'insufficient_privilege';"
)


class Event(models.Model):
    """The audit trail: every state change and every human action. Append-only and never purged.

    References are kept as plain ids (no database foreign key), so an event outlives what it describes and
    never blocks a deletion; `subject` keeps a readable name (an address, an ODS code) for that case.
    On PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE on this table, whoever asks; the portal's own
    database role is moreover granted only SELECT and INSERT on it (README, "Database roles").
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=60)
    actor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    mailbox = models.ForeignKey(
        Mailbox, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    wave = models.ForeignKey(
        Wave, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    subject = models.CharField(max_length=254, blank=True)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    # The inserting transaction's id (PostgreSQL xid8; 0 on SQLite): the event feed's order and its
    # visibility horizon, so no consumer skips an event that commits late (selectors/feed.py).
    txid = models.BigIntegerField(db_default=CurrentTransactionId(), editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organisation", "-id"], name="event_org_idx"),
            # the feed (/api/v1/events?after=) and the webhook fan-out read in (txid, id) order
            models.Index(fields=["txid", "id"], name="event_feed_idx"),
            models.Index(fields=["organisation", "txid", "id"], name="event_org_feed_idx"),
            models.Index(fields=["mailbox", "-id"], name="event_mailbox_idx"),
            models.Index(fields=["wave", "-id"], name="event_wave_idx"),
            models.Index(fields=["actor", "-id"], name="event_actor_idx"),
            models.Index(fields=["action", "-id"], name="event_action_idx"),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="event_append_only",
                level=pgtrigger.Row,
                when=pgtrigger.Before,
                operation=pgtrigger.Update | pgtrigger.Delete,
                func=APPEND_ONLY_REFUSAL,
            ),
            # TRUNCATE fires no row trigger: a statement trigger refuses it
            pgtrigger.Trigger(
                name="event_no_truncate",
                level=pgtrigger.Statement,
                when=pgtrigger.Before,
                operation=pgtrigger.Truncate,
                func=APPEND_ONLY_REFUSAL,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.subject}"


def _all_gates() -> list[str]:
    return list(Organisation.GATES)


class ProgrammeSettings(models.Model):
    """The programme's windows and planning rules: one row (pk 1), edited in the admin by the programme office.

    Times are wall-clock times in Europe/London; services build aware datetimes from them per date, so a
    window keeps its 18:00 start on both sides of a daylight-saving change."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    evening_days = models.CharField(
        max_length=7,
        default="0123",
        validators=[RegexValidator(r"^[0-6]{0,7}$", "Digits 0 (Monday) to 6 (Sunday)")],
        help_text="Days an evening window starts on: 0 = Monday ... 6 = Sunday (default 0123, Monday to Thursday)",
    )
    evening_starts = models.TimeField(default=datetime.time(18, 0))
    evening_ends = models.TimeField(default=datetime.time(6, 0), help_text="On the next day")
    evening_capacity_mailboxes = models.PositiveIntegerField(default=22_000)
    evening_capacity_bytes = models.BigIntegerField(default=30 * 1024**4)
    weekend_start_day = models.PositiveSmallIntegerField(choices=Weekday.choices, default=Weekday.FRIDAY)
    weekend_starts = models.TimeField(default=datetime.time(18, 0))
    weekend_end_day = models.PositiveSmallIntegerField(choices=Weekday.choices, default=Weekday.MONDAY)
    weekend_ends = models.TimeField(default=datetime.time(6, 0))
    weekend_capacity_mailboxes = models.PositiveIntegerField(default=83_000)
    weekend_capacity_bytes = models.BigIntegerField(default=110 * 1024**4)
    single_wave_organisation_max = models.PositiveIntegerField(
        "Largest organisation kept in one wave",
        default=5_000,
        help_text="Organisations with more ready mailboxes than this are spread over consecutive waves",
    )
    large_organisation_chunk = models.PositiveIntegerField(
        "Chunk size for large organisations",
        default=2_000,
        validators=[MinValueValidator(1)],
        help_text="Mailboxes without an affinity group in a large organisation move in chunks of this size",
    )
    pilot_mailboxes_per_organisation = models.PositiveSmallIntegerField(default=5)
    planning_horizon_days = models.PositiveIntegerField(default=365, validators=[MinValueValidator(1)])
    go_required_from_every_organisation = models.BooleanField(
        default=True, help_text="A wave can be approved only when every organisation in it has said go"
    )
    required_gates = models.JSONField(
        default=_all_gates,
        blank=True,
        help_text="The readiness gates (Organisation.GATES) an organisation must meet before it is planned",
    )
    readiness_recheck_hours = models.PositiveIntegerField(
        "Re-check readiness after (hours)",
        default=168,
        validators=[MinValueValidator(1)],
        help_text="Mailboxes whose last readiness check is older than this are checked again by themselves",
    )
    # The endpoints readiness checks log in to; both empty means the simulated engine (demos, drills).
    readiness_source_endpoint = models.ForeignKey(
        "Endpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    readiness_target_endpoint = models.ForeignKey(
        "Endpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "programme settings"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="programme_settings_singleton")]

    def __str__(self) -> str:
        return "Programme settings"

    @classmethod
    def load(cls) -> "ProgrammeSettings":
        settings, _ = cls.objects.get_or_create(pk=1)
        return settings


class ClosedPeriod(models.Model):
    """Dates with no migration window anywhere: bank holidays and programme-wide change freezes.

    A window is closed when any local date it touches (start date to end date) falls in one of these, so the
    morning after a window is always a staffed working day."""

    class Kind(models.TextChoices):
        BANK_HOLIDAY = "bank_holiday", "Bank holiday"
        FREEZE = "freeze", "Change freeze"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    starts_on = models.DateField()
    ends_on = models.DateField()
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["starts_on"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")), name="closed_period_ends_after_start"
            )
        ]
        indexes = [models.Index(fields=["starts_on"], name="closed_period_start_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.starts_on} to {self.ends_on})"


class Allocation(models.Model):
    """Part of the plan: an organisation, one affinity group of it, or a chunk of its ungrouped mailboxes,
    allocated to a wave. Tens of thousands of these stand for 2.1 million mailboxes; the mailbox rows get the
    wave only when it is approved (services.waves.wave_approve). Read membership through selectors.waves."""

    class Kind(models.TextChoices):
        ORGANISATION = "organisation", "Whole organisation"
        GROUP = "group", "Affinity group"
        CHUNK = "chunk", "Chunk of ungrouped mailboxes"

    wave = models.ForeignKey(Wave, on_delete=models.CASCADE, related_name="allocations")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="allocations")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    affinity_group = models.CharField(max_length=100, blank=True, default="")
    # CHUNK: the ungrouped ready mailboxes of the organisation with first_mailbox_id <= id <= last_mailbox_id.
    first_mailbox_id = models.BigIntegerField(null=True, blank=True)
    last_mailbox_id = models.BigIntegerField(null=True, blank=True)
    # What the planner counted; the live figures come from selectors.waves.
    planned_mailboxes = models.PositiveIntegerField(default=0)
    planned_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="group") | ~Q(affinity_group=""), name="allocation_group_named"
            ),
            models.CheckConstraint(
                condition=~Q(kind="chunk")
                | Q(first_mailbox_id__isnull=False, last_mailbox_id__gte=F("first_mailbox_id")),
                name="allocation_chunk_range",
            ),
        ]
        indexes = [
            models.Index(fields=["wave", "organisation"], name="allocation_wave_org_idx"),
            models.Index(fields=["organisation", "wave"], name="allocation_org_wave_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.organisation_id} in wave {self.wave_id}"


class ApiToken(models.Model):
    """A per-user token for scripts. Only a short prefix (for lookup) and the SHA-256 of the secret are kept:
    the raw token is shown once, when it is made (services.tokens.token_create)."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"
        APPROVE = "approve", "Approve waves"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class IdempotencyKey(models.Model):
    """The first response to a POST sent with an `Idempotency-Key` header, kept for a day so a retry of the
    same request gets it back instead of doing the work twice (api/idempotency.py, services/idempotency.py).

    One row per (user, key): the unique constraint is what stops two concurrent duplicates from both running.
    A row with no response yet is a request still in flight."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of method, path, query string, content type and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=2000)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.BinaryField(blank=True, default=b"")
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotencykey_user_key_unique")]
        indexes = [models.Index(fields=["expires_at"], name="idempotencykey_expires_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.key})"

    @property
    def in_flight(self) -> bool:
        return self.response_status is None


class Webhook(models.Model):
    """An organisation's subscription to its events: each matching event is POSTed, signed with `secret`
    (HMAC-SHA256, services/webhooks.py), to `url` by the workers. (`last_event_txid`, `last_event_id`) is
    the fan-out cursor in the event feed's order: events up to it have been turned into deliveries."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = EncryptedTextField(help_text="Signing secret; encrypted at rest and never shown back")
    # Event actions to send ("mailbox.migrated") or prefixes ending in "." ("mailbox."); empty: every event.
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    last_event_id = models.BigIntegerField(default=0)
    last_event_txid = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["organisation", "id"], name="webhook_org_idx")]

    def __str__(self) -> str:
        return f"{self.organisation_id}: {self.url}"

    def wants(self, action: str) -> bool:
        if not self.event_types:
            return True
        return any(action == t or (t.endswith(".") and action.startswith(t)) for t in self.event_types)


class WebhookDelivery(models.Model):
    """One message to one webhook (an event, or a test ping) and how its attempts went. Retries keep the
    same body and the same `Portal-Event-Id`, so a receiver can drop duplicates."""

    class Kind(models.TextChoices):
        EVENT = "event", "Event"
        PING = "ping", "Test ping"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=5, choices=Kind.choices, default=Kind.EVENT)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    message_id = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # fan-out may look at an event twice; it becomes one delivery per webhook
            models.UniqueConstraint(
                fields=["webhook", "event"], name="webhookdelivery_once_per_event", condition=Q(kind="event")
            )
        ]
        indexes = [
            models.Index(fields=["webhook", "-id"], name="webhookdelivery_webhook_idx"),
            # the due queue: pending deliveries only
            models.Index(
                fields=["next_attempt_at"], name="webhookdelivery_due_idx", condition=Q(status="pending")
            ),
            # the hourly purge of delivered bodies: only delivered ones that still have a body
            models.Index(
                fields=["last_attempt_at"],
                name="webhookdelivery_purge_idx",
                condition=Q(status="succeeded") & ~Q(payload={}),
            ),
        ]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints += [
        one_of("status", Status, name="webhookdelivery_status_valid"),
        only_if(
            Q(status=Status.PENDING), Q(next_attempt_at__isnull=False), name="webhookdelivery_pending_is_due"
        ),
    ]

    def __str__(self) -> str:
        return f"{self.message_id} to webhook {self.webhook_id}"


class ReadinessCheck(models.Model):
    """One readiness check: engine pre-flight over an organisation's mailboxes, a wave's, or a chosen set, run
    by the workers in batches (services.readiness). Counts grow as batches finish; the page polls them."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"

    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="readiness_checks"
    )
    wave = models.ForeignKey(Wave, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    # A chosen set (the API, the beat's re-check of mailboxes due): their ids.
    mailbox_ids = models.JSONField(null=True, blank=True)
    requested_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    ready = models.PositiveIntegerField(default=0)
    blocked = models.PositiveIntegerField(default=0)
    # Transient trouble past the retry limit, or no longer checkable (moved on meanwhile): left as they were.
    unchecked = models.PositiveIntegerField(default=0)
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["organisation", "-id"], name="readinesscheck_org_idx")]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints = [one_of("status", Status, name="readinesscheck_status_valid")]

    def __str__(self) -> str:
        return f"Readiness check {self.pk}"

    @property
    def done(self) -> int:
        return self.ready + self.blocked + self.unchecked

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)


# Notifications, support requests and the support-rate gate (issue 18) live in their own module.
from migrations_app.models_comms import (  # noqa: E402, F401
    Moment,
    Notification,
    NotificationSettings,
    NotificationTemplate,
    OrganisationHold,
    OrganisationNotice,
    SupportRequest,
)
from migrations_app.models_exports import Export  # noqa: E402, F401
