"""What every piece of background work people start and watch keeps about its run: when it was asked for,
started and finished, and why it failed (imports, readiness checks, exports)."""

from django.db import models


class BackgroundWork(models.Model):
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
