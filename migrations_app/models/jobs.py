"""Background jobs people start and watch: inventory imports and readiness checks."""

from django.db import models

from migrations_app.constraints import one_of
from migrations_app.models.accounts import User
from migrations_app.models.background import BackgroundWork
from migrations_app.models.organisations import Organisation
from migrations_app.models.waves import Wave


class ImportJob(BackgroundWork):
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


class ReadinessCheck(BackgroundWork):
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
