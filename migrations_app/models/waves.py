"""Waves, the decisions on them, the programme's settings and closed periods, and the planner's allocations."""

import datetime

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from migrations_app.constraints import one_of, only_if
from migrations_app.models.accounts import User
from migrations_app.models.choices import ChoiceLabels
from migrations_app.models.organisations import Organisation


class Wave(ChoiceLabels, models.Model):
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
        blank=True,  # none: weekend windows only
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
