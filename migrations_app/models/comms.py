"""Telling staff about their move, and counting the support it causes (issue 18): notification settings and
templates, one row per notification sent to a mailbox's owner, support requests and tickets, and the holds the
support-rate gate puts on an organisation's next waves.

Kept out of models.py (already long) and imported at its end, so Django registers them with the app.
"""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from migrations_app.constraints import one_of


class NotificationSettings(models.Model):
    """When staff are told, how fast Notify may be called, and the gate's thresholds: one row (pk 1)."""

    first_notice_days = models.PositiveSmallIntegerField(
        default=14, validators=[MinValueValidator(1)], help_text="Days before the window of the first notice"
    )
    second_notice_days = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Days before the window of the reminder"
    )
    day_of_hour = models.PositiveSmallIntegerField(
        default=8,
        validators=[MaxValueValidator(23)],
        help_text="Hour (UK time) on the day of the window when the 'today' notice goes",
    )
    per_minute = models.PositiveIntegerField(
        default=3_000, validators=[MinValueValidator(1)], help_text="Notify's rate limit: requests a minute"
    )
    daily_allowance = models.PositiveIntegerField(
        default=250_000, validators=[MinValueValidator(1)], help_text="Notify's daily email allowance"
    )
    support_window_days = models.PositiveSmallIntegerField(
        default=7, help_text="A support request within this many days after a move counts against the wave"
    )
    support_rate_threshold = models.DecimalField(
        "Support rate threshold (%)",
        max_digits=5,
        decimal_places=2,
        default=3,
        help_text="An organisation whose last wave's support rate is above this holds its next waves",
    )
    failure_rate_threshold = models.DecimalField(
        "Failure rate threshold (%)",
        max_digits=5,
        decimal_places=2,
        default=5,
        help_text="An organisation whose last wave failed more of its mailboxes than this holds its next waves",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "notification settings"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="notification_settings_singleton")]

    def __str__(self) -> str:
        return "Notification settings"

    @classmethod
    def load(cls) -> "NotificationSettings":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class Moment(models.TextChoices):
    """What a notification is about. Each mailbox gets each of these at most once (per occasion)."""

    FIRST = "first", "First notice (weeks before)"
    REMINDER = "reminder", "Reminder (days before)"
    DAY_OF = "day_of", "On the day"
    AFTER = "after", "After the move"
    DELAYED = "delayed", "Move delayed"
    UPDATE = "update", "Move rescheduled"
    # A template only: the organisation's contacts get one summary of their staff's moves per moment above
    # (a Notification row without a mailbox, its moment the one it summarises).
    DIGEST = "digest", "Digest to the organisation's contacts"


class NotificationTemplate(models.Model):
    """The words for one moment, edited and previewed by the programme office; nothing goes out until it is on.

    Placeholders in double brackets, as GOV.UK Notify writes them: ((name)), ((organisation)), ((window)),
    ((paragraph)), ((help_url)). The portal renders them and hands Notify a subject and a body."""

    moment = models.CharField(max_length=10, choices=Moment.choices, unique=True)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    enabled = models.BooleanField(default=False)
    previewed_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey("User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.get_moment_display()


class OrganisationNotice(models.Model):
    """The paragraph an organisation adds to every notification its staff get (its service desk, its app)."""

    organisation = models.OneToOneField("Organisation", on_delete=models.CASCADE, related_name="notice")
    paragraph = models.TextField(blank=True, max_length=2000)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Notice of {self.organisation_id}"


class Notification(models.Model):
    """One email to one person about one mailbox's move. The unique (mailbox, moment, occasion) makes every
    notification at-most-once however often the scheduler runs; `occasion` tells two updates apart (the new
    window) and two delays apart (the wave and the reason).

    A row without a mailbox is a digest: one email to one of an organisation's contacts summarising its
    staff's moves in a wave at one moment, at most once per (organisation, wave, moment, occasion, contact)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to send"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        PERMANENT_FAILURE = "permanent-failure", "Bad address"
        TEMPORARY_FAILURE = "temporary-failure", "Inbox full or unavailable"
        TECHNICAL_FAILURE = "technical-failure", "Technical failure"
        REJECTED = "rejected", "Rejected by Notify"
        NO_RECIPIENT = "no-recipient", "Nobody to send to"

    mailbox = models.ForeignKey(
        "Mailbox", null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    organisation_id = models.BigIntegerField()
    wave_id = models.BigIntegerField(null=True)
    moment = models.CharField(max_length=10, choices=Moment.choices)
    occasion = models.CharField(max_length=60, blank=True, default="")
    recipient = models.CharField(max_length=254, blank=True, default="")
    # The window the notification talks about: nearest first when the day's allowance cannot cover all.
    window_starts_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    notify_id = models.CharField(max_length=36, null=True, blank=True, unique=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "moment", "occasion"], name="notification_once"),
            models.UniqueConstraint(
                fields=["organisation_id", "wave_id", "moment", "occasion", "recipient"],
                condition=Q(mailbox__isnull=True),
                name="notification_digest_once",
            ),
        ]
        indexes = [
            # the sender's queue: nearest window first
            models.Index(
                fields=["window_starts_at", "id"],
                name="notification_pending_idx",
                condition=Q(status="pending"),
            ),
            # Notify's limits: how many went in the last minute and today
            models.Index(
                fields=["sent_at"], name="notification_sent_idx", condition=Q(sent_at__isnull=False)
            ),
            # bad addresses on an organisation's page
            models.Index(
                fields=["organisation_id", "id"],
                name="notification_bad_address_idx",
                condition=Q(status="permanent-failure"),
            ),
            models.Index(fields=["wave_id", "moment"], name="notification_wave_idx"),
            # a digest waits for its organisation's owners in the wave still to be sent (unsent rows only)
            models.Index(
                fields=["organisation_id", "wave_id"],
                name="notification_owner_wait_idx",
                condition=Q(status__in=("pending", "sending"), mailbox__isnull=False),
            ),
        ]

    # what the database accepts, built from the enum above (Meta cannot see it; see constraints.py)
    Meta.constraints += [one_of("status", Status, name="notification_status_valid")]

    def __str__(self) -> str:
        kind = "Digest" if self.mailbox_id is None else ""
        return f"{kind + ': ' if kind else ''}{self.get_moment_display()} to {self.recipient}"

    @property
    def is_digest(self) -> bool:
        return self.mailbox_id is None


class SupportRequest(models.Model):
    """Someone needed help after their move: from the public help form, or a ticket from a trust's own desk."""

    class Source(models.TextChoices):
        PUBLIC = "public", "Help form"
        API = "api", "Service desk (API)"
        CSV = "csv", "Service desk (CSV upload)"

    class Category(models.TextChoices):
        SIGN_IN = "sign_in", "I cannot sign in"
        PHONE = "phone", "Mail on my phone stopped working"
        MISSING = "missing", "Mail, calendar or contacts are missing"
        SHARED = "shared", "I cannot open a shared mailbox"
        SENDING = "sending", "I cannot send or receive mail"
        OTHER = "other", "Something else"

    organisation = models.ForeignKey(
        "Organisation", on_delete=models.CASCADE, related_name="support_requests"
    )
    mailbox = models.ForeignKey(
        "Mailbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="support_requests"
    )
    # The wave the mailbox was in when the request came: the support rate counts a request against the wave it
    # followed, without reading mailbox rows (the dashboard reads none).
    wave = models.ForeignKey("Wave", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    email = models.CharField(max_length=254)
    category = models.CharField(max_length=10, choices=Category.choices)
    description = models.TextField(blank=True, max_length=2000)
    source = models.CharField(max_length=10, choices=Source.choices)
    # The trust's ticket reference (empty for the help form): a ticket imported twice is one ticket.
    reference = models.CharField(max_length=100, blank=True, default="")
    opened_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "reference"],
                name="supportrequest_reference_once",
                condition=~Q(reference=""),
            )
        ]
        indexes = [
            models.Index(fields=["organisation", "-opened_at"], name="supportrequest_org_idx"),
            models.Index(fields=["mailbox", "opened_at"], name="supportrequest_mailbox_idx"),
            models.Index(fields=["wave", "opened_at"], name="supportrequest_wave_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email}: {self.get_category_display()}"


class OrganisationHold(models.Model):
    """The gate: an organisation whose wave crossed a threshold holds its next waves until it says go again or
    the programme office overrides, with a reason. One per (organisation, wave)."""

    class Release(models.TextChoices):
        GO = "go", "The organisation gave go again"
        OVERRIDE = "override", "The programme office overrode the hold"

    organisation = models.ForeignKey("Organisation", on_delete=models.CASCADE, related_name="holds")
    wave = models.ForeignKey("Wave", on_delete=models.CASCADE, related_name="+")
    reason = models.TextField()
    support_rate = models.DecimalField(max_digits=6, decimal_places=2, null=True)
    failure_rate = models.DecimalField(max_digits=6, decimal_places=2, null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey("User", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    release = models.CharField(max_length=10, choices=Release.choices, blank=True, default="")
    release_reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "wave"], name="organisationhold_once_per_wave")
        ]
        indexes = [
            models.Index(
                fields=["organisation"],
                name="organisationhold_active_idx",
                condition=Q(released_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"Hold on {self.organisation_id} after {self.wave_id}"
