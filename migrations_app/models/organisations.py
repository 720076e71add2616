"""Organisations (by ODS code), their contacts, blackout dates and invitations."""

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper

from migrations_app.constraints import one_of
from migrations_app.models.accounts import User
from migrations_app.models.choices import ChoiceLabels

ODS_CODE_PATTERN = r"^[A-Z0-9]{1,9}$"


class Organisation(ChoiceLabels, models.Model):
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
