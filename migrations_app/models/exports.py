"""A CSV export prepared by a worker (the whole audit log, every mailbox): too big for a web request that a
30 s proxy timeout kills. The person who asked polls its progress and downloads the file (services/exports.py)."""

from django.db import models

from migrations_app.constraints import one_of
from migrations_app.models.background import BackgroundWork


class Export(BackgroundWork):
    class Kind(models.TextChoices):
        AUDIT = "audit", "Audit log"
        MAILBOXES = "mailboxes", "Mailboxes"

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        RUNNING = "running", "Being prepared"
        SUCCEEDED = "succeeded", "Ready to download"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The page's filters when it was asked for (a query string), applied with the asker's scope at run time.
    params = models.CharField(max_length=2000, blank=True, default="")
    requested_by = models.ForeignKey("User", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_done = models.PositiveBigIntegerField(default=0)
    file = models.FileField(upload_to="exports/%Y/%m/", blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["requested_by", "-id"], name="export_user_idx")]

    # what the database accepts, built from the enums above (Meta cannot see them; see constraints.py)
    Meta.constraints = [one_of("status", Status, name="export_status_valid")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} export {self.pk}"

    @property
    def filename(self) -> str:
        return f"{'audit-log' if self.kind == self.Kind.AUDIT else 'mailboxes'}-{self.pk}.csv"
